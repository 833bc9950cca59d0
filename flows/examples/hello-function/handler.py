"""A serverless function: `cxmpute functions deploy flows/examples/hello-function --name hello`."""


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"greeting {name}")  # the invocation's logs
    return {"greeting": f"hello {name}"}
