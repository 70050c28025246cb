import os
import socket

os.environ["SET_AT_IMPORT"] = "by this function"


def handle(event, context):
    return dict(os.environ)


def hostname(event, context):
    return socket.gethostname()
