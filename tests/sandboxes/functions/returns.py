VALUES = {
    "bytes": b"\x00\x01",
    "bytearray": bytearray(b"ab"),
    "str": "h\u00e9llo",
    "none": None,
    "dict": {"a": [1, 2.5, None, True]},
    "list": [1, "two"],
    "int": 42,
    "object": object(),
}


def handle(event, context):
    return VALUES[event.text()]


def big(event, context):
    return b"x" * int(event.text())


def context_of(event, context):
    return {
        "app": context.app,
        "function": context.function,
        "version": context.version,
        "instance_id": context.instance_id,
        "remaining": context.remaining_time(),
        "trigger": event.trigger,
        "meta": event.meta,
        "json": event.json(),
    }
