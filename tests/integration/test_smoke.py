from tests.integration.harness import dynamic_for, get


def test_get_reaches_backend_and_returns_its_answer(backend, turnout):
    server = backend()
    proxy = turnout(dynamic_for(server.url))
    response = get(proxy.port, "/hello?x=1", host="app.example.com")
    assert response.status == 200
    assert response.body == b"ok"
    [received] = server.requests
    assert received.method == "GET"
    assert received.target == "/hello?x=1"
    assert received.header("host") == "app.example.com"
    assert received.header("x-forwarded-for") == "127.0.0.1"
    assert received.header("x-forwarded-host") == "app.example.com"
    assert received.header("x-forwarded-proto") == "http"
    assert received.header("x-forwarded-port") == "80"
    assert received.header("x-real-ip") == "127.0.0.1"
