"""The serverless pipeline's steps: accept a spec, queue it, render it on a worker, record the
outcome; batches, shared segment encodes, the sweeper and the HTTP API's handlers.

Built on the render core and the cloud adapters; the doors (functions/, the CLI) call it.
"""
