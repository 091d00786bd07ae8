"""What the tests share: launchers (a real gateway process, an in-process app), fakes (the OpenAI HTTP side,
a stub gateway, webhook/Slack/SMTP receivers, a lossy proxy) and polling helpers.

Import as ``from support.<module> import ...``: the tests directory is on ``sys.path`` (pytest's rootdir
conftest), and the subprocess scripts the tests start put it there themselves.
"""
