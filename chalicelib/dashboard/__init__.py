"""The operator's dashboard: one page that says whether every plan is healthy, a page per backup, and two
buttons ("Back up now", "Verify") that call the same services as the API.

It is a small local web server (`org-backup dashboard`, on 127.0.0.1 only) that runs with the operator's own
credentials and calls chalicelib directly: the API's IAM authorization cannot be used from a browser.
Pages are rendered on the server (Jinja2, autoescaped) and charts are inline SVG: no script and nothing
fetched from the internet.
"""
