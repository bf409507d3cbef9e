"""Client protocols. Each module parses its frames, calls the shared node
through its declared interface (interface.NodeAPI), and writes the answer;
none holds state of the store. The client-port protocols share one
connection state machine (connection.ClientConnection)."""
