from twisted.application.service import ServiceMaker

doozer = ServiceMaker(
    "doozertw node",
    "doozertw.tap",
    "A doozer-compatible, highly available, strongly consistent data store.",
    "doozer",
)
