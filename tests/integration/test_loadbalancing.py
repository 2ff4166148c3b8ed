"""Smooth weighted round-robin over a service's servers, through a real Turnout.

Issue 2, section 5: load balancing over ``servers`` by smooth weighted
round-robin; weight 0 takes a server out of rotation, as in Traefik.
"""

from __future__ import annotations

from tests.integration.harness import ResponseReader, connect, dynamic_for, get, ok_response


def named(name: str):
    return lambda received: ok_response(name.encode())


def sequence(port: int, count: int) -> list[str]:
    """Which server answered each of count sequential requests on one connection."""
    answers = []
    with connect(port) as sock:
        reader = ResponseReader(sock)
        for index in range(count):
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: lb.example.com\r\n\r\n" % index)
            response = reader.read()
            assert response.status == 200
            answers.append(response.body.decode())
    return answers


def longest_run(answers: list[str], name: str) -> int:
    best = run = 0
    for answer in answers:
        run = run + 1 if answer == name else 0
        best = max(best, run)
    return best


def test_equal_weights_alternate(backend, turnout):
    a, b = backend(responder=named("a")), backend(responder=named("b"))
    proxy = turnout(dynamic_for(a.url, b.url))
    answers = sequence(proxy.port, 10)
    assert answers.count("a") == answers.count("b") == 5
    assert longest_run(answers, "a") == longest_run(answers, "b") == 1


def test_weights_share_every_cycle_exactly(backend, turnout):
    a, b, c = (backend(responder=named(name)) for name in "abc")
    proxy = turnout(dynamic_for(a.url, b.url, c.url, weights=(3, 2, 1)))
    answers = sequence(proxy.port, 24)
    for start in range(0, 24, 6):
        cycle = answers[start : start + 6]
        assert (cycle.count("a"), cycle.count("b"), cycle.count("c")) == (3, 2, 1), answers
    assert (len(a.requests), len(b.requests), len(c.requests)) == (12, 8, 4)


def test_heavy_server_turns_are_spread_not_bunched(backend, turnout):
    # Smooth WRR: weights 5:1:1 give a a b a c a a, never five a in a row.
    a, b, c = (backend(responder=named(name)) for name in "abc")
    proxy = turnout(dynamic_for(a.url, b.url, c.url, weights=(5, 1, 1)))
    answers = sequence(proxy.port, 21)
    for start in range(0, 21, 7):
        cycle = answers[start : start + 7]
        assert (cycle.count("a"), cycle.count("b"), cycle.count("c")) == (5, 1, 1), answers
        # Within a cycle the light servers interrupt the heavy one.
        assert longest_run(cycle, "a") <= 2, answers
    assert longest_run(answers, "b") == longest_run(answers, "c") == 1


def test_weight_zero_takes_a_server_out_of_rotation(backend, turnout):
    a, b, c = (backend(responder=named(name)) for name in "abc")
    proxy = turnout(dynamic_for(a.url, b.url, c.url, weights=(1, 0, 1)))
    answers = sequence(proxy.port, 8)
    assert sorted(set(answers)) == ["a", "c"]
    assert answers.count("a") == answers.count("c") == 4
    assert b.connections == 0


def test_all_weights_zero_is_service_unavailable(backend, turnout):
    a = backend()
    proxy = turnout(dynamic_for(a.url, weights=(0,)))
    response = get(proxy.port)
    assert response.status == 503
    assert a.connections == 0


def test_balancing_spans_client_connections(backend, turnout):
    # The rotation belongs to the service, not to a client connection.
    a, b = backend(responder=named("a")), backend(responder=named("b"))
    proxy = turnout(dynamic_for(a.url, b.url))
    answers = [get(proxy.port).body.decode() for _ in range(6)]
    assert answers.count("a") == answers.count("b") == 3
    # Each backend keeps one pooled connection for all of its requests.
    assert a.connections == b.connections == 1


def test_a_name_with_several_addresses_falls_back_to_the_one_listening(backend, turnout):
    """``localhost`` resolves to ::1 and 127.0.0.1; a backend on 127.0.0.1 only
    must get every request, each on a new connection (so each dial rotates)."""
    server = backend(responder=lambda received: ok_response(b"v4", "Connection: close\r\n"))
    proxy = turnout(dynamic_for(f"http://localhost:{server.port}"))
    for index in range(8):
        response = get(proxy.port, f"/{index}")
        assert (response.status, response.body) == (200, b"v4"), response.status
    assert server.connections == 8
