

def test_basic_roundtrip(client):
    client.set(b"smoke:a", b"1")
    assert client.get(b"smoke:a") == b"1"
    assert client.get(b"smoke:missing") is None
    client.set("smoke:empty", b"")
    assert client.get("smoke:empty") == b""
    assert client.mget(["smoke:a", "smoke:missing", "smoke:empty"]) == [b"1", None, b""]
    assert client.delete("smoke:a", "smoke:missing") == 1
    assert client.ping() is True
