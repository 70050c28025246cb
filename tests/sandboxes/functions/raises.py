def handle(event, context):
    raise ValueError("bad reading")
