"""tppp.serve: an OpenAI-compatible server over the serving API; run it as
`tppp-run -n N -- python3 -m tppp.serve MODEL --tp T --pp P --port PORT`
(see __main__.py). engine: the scheduler loop; protocol: OpenAI's shapes;
http: the routes."""
