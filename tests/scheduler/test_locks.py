import threading

from scheduler.locks import overlap_lock


def test_a_second_holder_is_told_the_lock_is_held_until_the_first_lets_go():
    inside, release = threading.Event(), threading.Event()
    states = []

    def first():
        with overlap_lock("test-overlap", ttl=30) as state:
            states.append(state)
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(10)
    try:
        with overlap_lock("test-overlap", ttl=30) as state:
            assert state == "locked"
    finally:
        release.set()
        thread.join()
    assert states == ["held"]
    with overlap_lock("test-overlap", ttl=30) as state:  # free again once the first is done
        assert state == "held"


def test_the_lock_is_unavailable_when_redis_does_not_answer(monkeypatch, settings):
    # given a Redis that does not answer (nothing listens on port 1), through the project's
    # client
    import domain.common.redis as project_redis

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(project_redis, "_client", None)
    with overlap_lock("test-no-redis", ttl=30) as state:
        assert state == "unavailable"
