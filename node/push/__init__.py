"""Push notifications (content/client-server-api/modules/push.md).

``rules``: the server-default rules and rule evaluation (pure); ``store``: the push
tables; ``gateway``: HTTP delivery to push gateways; ``service``: :class:`PushService`,
which ties them together for the client API and the event path.
"""
