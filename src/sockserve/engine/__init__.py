"""The connection pipeline every server shares: accept, admit, prepare, serve, end, drain.

Read ``docs/pipeline.md`` first: it has the map of the stages, who runs each
and which timeout bounds it.
"""
