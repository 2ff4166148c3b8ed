"""Configuration snippets and helpers shared by the service suites."""

from __future__ import annotations

import pytest

from tests.integration.harness import BackendProcess, get, ok_response


def named(name: str):
    """A responder answering 200 with NAME as the body."""
    return lambda received: ok_response(name.encode())


def bodies(port: int, count: int, host: str = "example.com") -> list[str]:
    """The bodies of count requests, one connection each ('503' for an empty 503)."""
    answers = []
    for _ in range(count):
        response = get(port, host=host)
        answers.append(response.body.decode() if response.status == 200 else str(response.status))
    return answers


def balancer(name: str, *urls: str, health: str = "") -> str:
    """A loadBalancer service NAME over urls; ``health`` is the body of its healthCheck."""
    text = f"[http.services.{name}.loadBalancer]\n"
    for url in urls:
        text += f'[[http.services.{name}.loadBalancer.servers]]\nurl = "{url}"\n'
    if health:
        text += f"[http.services.{name}.loadBalancer.healthCheck]\n{health}"
    return text


def router(service: str, name: str = "app", rule: str = "PathPrefix(`/`)") -> str:
    return f'[http.routers.{name}]\nrule = "{rule}"\nservice = "{service}"\n'


FAST_HEALTH = 'path = "/h"\ninterval = "200ms"\ntimeout = "500ms"\n'


@pytest.fixture
def processes():
    """Backend processes (``tests.integration.stream_backend``) that a test can kill and restart."""
    started: list[BackendProcess] = []

    def make(name: str, port: int = 0) -> BackendProcess:
        process = BackendProcess(name, port=port)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
