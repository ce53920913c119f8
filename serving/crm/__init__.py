"""The CRM console: server-rendered pages for marketers under `/crm/` (docs/crm-console.md).

`console.install_console(app, services)` mounts it on the serving app. One module per idea:
`session` (sign-in cookie, CSRF), `customer_frame` (the score tables as numpy columns:
filter, sort, page), `customer_query` (the list's query string), `shop_history` (orders,
feedback, item names from the shop's files), `overview` (the overview's numbers), `charts`
(matplotlib SVG), `export` (the streamed CSV), `registry_view` (the models page's registry
reads), `pages` (templates and headers) and one `routes_*` module per page group.
"""
