import os
import sys


def handle(event, context):
    os._exit(3)


def abort(event, context):
    os.abort()


def exit_via_sys(event, context):
    sys.exit(5)
