import os

count = 0


def handle(event, context):
    global count
    count += 1
    return {"count": count, "pid": os.getpid()}
