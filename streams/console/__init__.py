"""`agentstream console`: the web pages for analysts, reviewers and on-call.

Split by job so each piece is testable alone: `queries` builds SQL (pure), `charts` draws SVG
(pure), `auth` decides who may look and act, `sources` fetches from ClickHouse and Kafka,
`pages` turns requests into templates, `server` wires them into an aiohttp application.
Nothing here runs at import time.
"""
