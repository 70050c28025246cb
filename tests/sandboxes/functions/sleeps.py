import time


def handle(event, context):
    time.sleep(float(event.text() or 0.3))
    return b"slept"
