MB = 1024 * 1024


def handle(event, context):
    """Ten times a 32 MB limit, a megabyte at a time, each one touched."""
    chunks = []
    for _ in range(320):
        chunk = bytearray(MB)
        chunk[::4096] = b"x" * (MB // 4096)
        chunks.append(chunk)
    return f"allocated {len(chunks)} MB"


def at_once(event, context):
    return len(bytearray(320 * MB))
