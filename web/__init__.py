"""Static files of the web view (HTML, JS, CSS), shipped as package data."""
