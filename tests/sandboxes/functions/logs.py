def handle(event, context):
    context.log("hello from the function")
    print("printed by the function")
    return b"logged"
