"""The in-app inbox: writing in-app deliveries into it, the moves between unread, read and
archived and the unread counter through them (also under concurrent reads on PostgreSQL), and
the query plan of an inbox page with 100,000 items."""

from __future__ import annotations

import random
import statistics
import time
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from domain.common.errors import NotFound, ValidationFailed
from domain.common.pagination import CreatedAtCursorPagination
from domain.notifications.inbox import (
    inbox_deliver,
    inbox_item_mark,
    inbox_items,
    inbox_read_all,
    inbox_unread,
)
from domain.notifications.models import (
    AttemptResult,
    DeliveryAttempt,
    DeliveryStatus,
    InboxCounter,
    InboxItem,
    InboxState,
)
from domain.notifications.preferences import opted_out_reason, preferences_put
from tests.conftest import simultaneously
from tests.notification_utils import (
    deliver_inbox,
    fresh,
    jobs_of,
    people,
    security_context,
    send,
)


def _inbox(recipient: str, count: int) -> list[InboxItem]:
    """`count` unread items for one recipient, written by the in-app job body, newest first."""
    results = [send(recipients=[{"id": recipient}], channels=["in_app"],
                    context=security_context(title=f"Notice {n}")) for n in range(count)]
    inbox_deliver(jobs_of([d for r in results for d in r.deliveries]))
    return list(inbox_items(recipient_id=recipient))


def _unread_rows(recipient: str) -> int:
    return InboxItem.objects.filter(recipient_id=recipient, state=InboxState.UNREAD).count()


# --- Writing ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_in_app_deliveries_become_unread_items_and_count():
    # given a security alert to three recipients, in-app
    result = send(recipients=people(3), channels=["in_app"])

    # when their job runs (one: the three are a chunk)
    answers = deliver_inbox(result.deliveries)

    # then it counts three written, and each recipient has one unread item rendered from the
    # template, and a count of 1
    assert answers == [{"delivered": 3, "skipped": 0, "failed": 0, "not_written": 0}]
    for person, delivery in zip(people(3), result.deliveries, strict=True):
        [item] = InboxItem.objects.filter(recipient_id=person["id"])
        assert item.state == InboxState.UNREAD
        assert item.title == "New sign-in to your account"
        assert item.body.startswith("Someone signed in from Lyon.\n\nWhen: 2026-11-28T09:00:00Z")
        assert item.data == security_context()
        assert (item.template, item.category) == ("security_alert", "security")
        assert (item.delivery_id, item.notification_id) == (delivery.pk, result.notification.pk)
        assert inbox_unread(recipient_id=person["id"]) == 1
        # and the delivery is delivered with one attempt
        assert fresh(delivery).status == DeliveryStatus.DELIVERED
        assert [a.outcome for a in DeliveryAttempt.objects.filter(delivery=delivery)] == [
            AttemptResult.DELIVERED]

    # when another one comes for the first recipient, then their count is 2
    deliver_inbox(send(recipients=people(1), channels=["in_app"]).deliveries)
    assert inbox_unread(recipient_id="user-0") == 2


@pytest.mark.django_db
def test_a_job_run_twice_writes_one_item():
    result = send(recipients=people(2), channels=["in_app"])
    deliver_inbox(result.deliveries)

    again = deliver_inbox(result.deliveries)

    assert again == [{"delivered": 0, "skipped": 0, "failed": 0, "not_written": 2}]
    assert InboxItem.objects.count() == 2
    for delivery in result.deliveries:
        assert inbox_unread(recipient_id=delivery.recipient_id) == 1
        assert (fresh(delivery).status, fresh(delivery).attempts) == (
            DeliveryStatus.DELIVERED, 1)


@pytest.mark.django_db
def test_an_opted_out_in_app_delivery_is_skipped_and_not_counted():
    # given one of two recipients opted out of comments in-app
    preferences_put(recipient_id="u-5", choices={"comments": {"in_app": False}})
    result = send("comment_added", recipients=[{"id": "u-5"}, {"id": "u-6"}],
                  channels=["in_app"])
    opted, other = result.deliveries

    # when their one job runs
    [answer] = deliver_inbox(result.deliveries)

    # then the opted-out delivery is skipped with the reason, no item, no count, no attempt
    reason = opted_out_reason("comments", "in_app")
    assert answer == {"delivered": 1, "skipped": 1, "failed": 0, "not_written": 0}
    assert (fresh(opted).status, fresh(opted).reason) == (DeliveryStatus.SKIPPED, reason)
    assert not InboxItem.objects.filter(recipient_id="u-5").exists()
    assert inbox_unread(recipient_id="u-5") == 0
    assert not DeliveryAttempt.objects.filter(delivery=opted).exists()
    # and the other recipient's, in the same chunk, is written and counted
    assert fresh(other).status == DeliveryStatus.DELIVERED
    assert InboxItem.objects.filter(recipient_id="u-6").count() == 1
    assert inbox_unread(recipient_id="u-6") == 1


# --- States and the counter ------------------------------------------------------------------

@pytest.mark.django_db
def test_moves_between_states_keep_the_count():
    items = _inbox("ann", 3)
    first = items[0]
    assert inbox_unread(recipient_id="ann") == 3

    def move(action: str, item: InboxItem = first) -> InboxItem:
        return inbox_item_mark(recipient_id="ann", item_id=item.pk, action=action)

    # read: one fewer unread, and when
    moved = move("read")
    assert moved.state == InboxState.READ and moved.read_at is not None
    assert inbox_unread(recipient_id="ann") == 2
    # the same move twice changes nothing
    assert move("read").state == InboxState.READ
    assert inbox_unread(recipient_id="ann") == 2
    # unread from read: one more
    assert move("unread").state == InboxState.UNREAD
    assert inbox_unread(recipient_id="ann") == 3
    assert move("unread").state == InboxState.UNREAD
    assert inbox_unread(recipient_id="ann") == 3
    # archive from unread: one fewer
    archived = move("archive")
    assert archived.state == InboxState.ARCHIVED and archived.archived_at is not None
    assert inbox_unread(recipient_id="ann") == 2
    assert move("archive").state == InboxState.ARCHIVED
    assert inbox_unread(recipient_id="ann") == 2
    # read does not take an item out of the archive
    assert move("read").state == InboxState.ARCHIVED
    assert inbox_unread(recipient_id="ann") == 2
    # unread from archived: back in the inbox, unread, and counted
    back = move("unread")
    assert back.state == InboxState.UNREAD and back.archived_at is None
    assert inbox_unread(recipient_id="ann") == 3
    # archive from read: the count does not move
    move("read", items[1])
    assert inbox_unread(recipient_id="ann") == 2
    move("archive", items[1])
    assert inbox_unread(recipient_id="ann") == 2
    # and the stored rows agree with the counter at every step's end
    assert _unread_rows("ann") == inbox_unread(recipient_id="ann")
    assert fresh_item(first).state == InboxState.UNREAD


def fresh_item(item: InboxItem) -> InboxItem:
    return InboxItem.objects.get(pk=item.pk)


@pytest.mark.django_db
def test_listing_by_state_newest_first_without_state_not_archived():
    items = _inbox("bea", 4)  # newest first
    inbox_item_mark(recipient_id="bea", item_id=items[1].pk, action="read")
    inbox_item_mark(recipient_id="bea", item_id=items[2].pk, action="archive")

    def listed(state=None):
        return [i.pk for i in inbox_items(recipient_id="bea", state=state)]

    assert listed() == [items[0].pk, items[1].pk, items[3].pk]
    assert listed(InboxState.UNREAD) == [items[0].pk, items[3].pk]
    assert listed(InboxState.READ) == [items[1].pk]
    assert listed(InboxState.ARCHIVED) == [items[2].pk]
    assert [i.title for i in inbox_items(recipient_id="bea")] == [
        "Notice 3", "Notice 2", "Notice 0"]


@pytest.mark.django_db
def test_read_all_reads_every_unread_item_and_zeroes_the_count():
    items = _inbox("cid", 5)
    inbox_item_mark(recipient_id="cid", item_id=items[0].pk, action="read")
    inbox_item_mark(recipient_id="cid", item_id=items[1].pk, action="archive")
    other = _inbox("dan", 2)

    changed = inbox_read_all(recipient_id="cid")

    assert changed == 3
    assert inbox_unread(recipient_id="cid") == 0 == _unread_rows("cid")
    assert fresh_item(items[1]).state == InboxState.ARCHIVED  # archived stays archived
    assert all(fresh_item(i).read_at for i in items[2:])
    # and another recipient's inbox is untouched
    assert inbox_unread(recipient_id="dan") == 2 and fresh_item(other[0]).state == "unread"
    # and again: nothing to read
    assert inbox_read_all(recipient_id="cid") == 0
    assert inbox_unread(recipient_id="cid") == 0


@pytest.mark.django_db
def test_bad_moves_are_refused():
    [item] = _inbox("eve", 1)
    with pytest.raises(ValidationFailed) as refused:
        inbox_item_mark(recipient_id="eve", item_id=item.pk, action="delete")
    assert refused.value.code == "invalid_action"
    # another recipient's item is not found (not "forbidden": it does not exist for them)
    with pytest.raises(NotFound):
        inbox_item_mark(recipient_id="mallory", item_id=item.pk, action="read")
    with pytest.raises(NotFound):
        inbox_item_mark(recipient_id="eve", item_id="7e0d1f7a-0000-4000-8000-000000000000",
                        action="read")
    assert fresh_item(item).state == InboxState.UNREAD
    assert inbox_unread(recipient_id="eve") == 1
    assert inbox_unread(recipient_id="nobody") == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_read_all_with_concurrent_single_moves_keeps_the_count_exact(private_broker, round_):
    # given 30 unread items and 10 read ones
    items = _inbox("fay", 40)
    for item in items[30:]:
        inbox_item_mark(recipient_id="fay", item_id=item.pk, action="read")
    assert inbox_unread(recipient_id="fay") == 30

    # when, all at once, on their own connections: two read-alls, 10 single reads of unread
    # items, 5 archives of unread items, and 10 unread moves of read items (in an order of
    # the round's own: which threads pass the barrier first is up to the scheduler)
    plan = ([("read_all", None)] * 2 + [("read", i) for i in items[:10]]
            + [("archive", i) for i in items[10:15]] + [("unread", i) for i in items[30:]])
    random.Random(round_).shuffle(plan)
    steps = iter(plan)

    def act():
        action, item = next(steps)
        if action == "read_all":
            return inbox_read_all(recipient_id="fay")
        return inbox_item_mark(recipient_id="fay", item_id=item.pk, action=action).state

    simultaneously(len(plan), act)

    # then the counter is exactly the number of unread rows, whatever the interleaving
    assert inbox_unread(recipient_id="fay") == _unread_rows("fay")
    assert InboxCounter.objects.get(recipient_id="fay").unread == _unread_rows("fay")
    # and the archived ones stayed archived
    assert all(fresh_item(i).state == InboxState.ARCHIVED for i in items[10:15])
    print(f"round {round_}: read-alls at {[n for n, (a, _) in enumerate(plan) if a == 'read_all']}"
          f" of {len(plan)}, {_unread_rows('fay')} unread after the race (0 to 10)")


# --- 100,000 items: the page's plan ----------------------------------------------------------

BIG = "big-inbox"


def _fill(recipient: str, count: int, others: int) -> None:
    """`count` items for one recipient (70% read, 20% unread, 10% archived, a second apart)
    and `others` items spread over 1,000 other recipients: one INSERT … SELECT each."""
    table = InboxItem._meta.db_table
    sql = (
        f"INSERT INTO {table} (id, recipient_id, template, category, title, body, data, "  # noqa: S608 - the model's own table
        "state, created_at, read_at) "
        "SELECT gen_random_uuid(), {recipient}, 'security_alert', 'security', "
        "'Notice ' || n, 'Body of notice ' || n, '{{}}'::jsonb, "
        "CASE WHEN mod(n, 10) < 7 THEN 'read' WHEN mod(n, 10) < 9 THEN 'unread' "
        "ELSE 'archived' END, "
        "now() - n * interval '1 second', "
        "CASE WHEN mod(n, 10) < 7 THEN now() ELSE NULL END "
        "FROM generate_series(1, %s) AS n")
    with connection.cursor() as cursor:
        cursor.execute(sql.format(recipient="%s"), [recipient, count])
        cursor.execute(sql.format(recipient="'other-' || mod(n, 1000)"), [others])
        cursor.execute(f"INSERT INTO {InboxCounter._meta.db_table} (recipient_id, unread) "  # noqa: S608
                       "VALUES (%s, %s)", [recipient, count // 5])
    _analyze()


def _analyze() -> None:
    """VACUUM ANALYZE: statistics for the planner, and the visibility map and page counts
    of a table and indexes that only these rows are in (the tests that fill them commit
    and are truncated after, so no earlier test's dead rows weigh on the plan)."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {InboxItem._meta.db_table}")


def _page(query: str) -> tuple[list[InboxItem], str, CreatedAtCursorPagination]:
    """The page GET /api/v1/inbox/{recipient}{query} reads (selector + paginator), and the
    one SQL statement it ran."""
    request = Request(APIRequestFactory().get(f"/api/v1/inbox/{BIG}{query}"))
    state = request.query_params.get("state")
    paginator = CreatedAtCursorPagination()
    with CaptureQueriesContext(connection) as queries:
        page = paginator.paginate_queryset(inbox_items(recipient_id=BIG, state=state), request)
    [query_run] = queries.captured_queries
    return page, query_run["sql"], paginator


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY OFF) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # VACUUM runs outside a transaction
def test_an_inbox_of_100000_items_is_read_from_its_index():
    # given one recipient with 100,000 items beside 50,000 of 1,000 others
    started = time.perf_counter()
    _fill(BIG, 100_000, 50_000)
    print(f"\nfilled 150,000 inbox items in {time.perf_counter() - started:.1f} s")
    assert InboxItem.objects.filter(recipient_id=BIG).count() == 100_000

    for state_query, index in (("?state=unread", "inbox_recipient_state"),
                               ("", "inbox_recipient")):
        # when the first page, then the next one (by its cursor), is read
        first, first_sql, paginator = _page(state_query)
        assert len(first) == 50
        cursor = parse_qs(urlparse(paginator.get_next_link()).query)["cursor"][0]
        joiner = "&" if state_query else "?"
        second, second_sql, _ = _page(f"{state_query}{joiner}cursor={cursor}")
        assert len(second) == 50
        assert first[-1].created_at > second[0].created_at
        if state_query:
            assert {i.state for i in first + second} == {InboxState.UNREAD}
        else:
            assert InboxState.ARCHIVED not in {i.state for i in first + second}

        # then each page is an index range scan in the page's order: no sort, no table scan
        for name, sql in (("first page", first_sql), ("cursor page", second_sql)):
            plan = _plan(sql)
            print(f"\n-- GET /api/v1/inbox/{{recipient}}{state_query or ''} ({name}):\n{sql}\n"
                  f"{plan}")
            assert f"Index Scan using {index} on" in plan or (
                f"Index Only Scan using {index} on" in plan), plan
            assert "Sort" not in plan, plan
            assert "Seq Scan" not in plan, plan

    # and the first page's time, as a figure (not asserted)
    for query, of in (("?state=unread", "20,000 unread"), ("", "90,000 not archived")):
        times = []
        for _ in range(20):
            started = time.perf_counter()
            _page(query)
            times.append((time.perf_counter() - started) * 1000)
        print(f"\nfirst page of GET /api/v1/inbox/{{recipient}}{query} (selector + paginator, "
              f"50 of {of} in 100,000): median {statistics.median(times):.2f} ms, "
              f"best {min(times):.2f} ms of {len(times)}")



@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # VACUUM runs outside a transaction
def test_an_inbox_of_100000_archived_items_lists_its_others_from_the_index():
    # given a recipient who archives everything: 100,000 archived items, newer than the 60
    # they have not archived yet (the default view must not walk through the archive), beside
    # 50,000 items of 1,000 others
    table = InboxItem._meta.db_table
    _fill("someone-else", 0, 50_000)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, recipient_id, template, category, title, body, data, "  # noqa: S608
            "state, created_at) SELECT gen_random_uuid(), %s, 'security_alert', 'security', "
            "'Notice ' || n, '', '{}'::jsonb, "
            "CASE WHEN n <= 100000 THEN 'archived' ELSE 'read' END, "
            "now() - (100060 - n) * interval '1 second' FROM generate_series(1, 100060) AS n",
            [BIG])
    _analyze()

    # when the first page without a state is read
    page, sql, _ = _page("")

    # then it holds the 50 newest of the 60, read from the index, with no sort and no scan of
    # the table, and without visiting the archived items
    assert len(page) == 50 and {i.state for i in page} == {InboxState.READ}
    plan = _plan(sql)
    print(f"\n-- GET /api/v1/inbox/{{recipient}} (100,000 archived, 60 not):\n{plan}")
    assert "Index Scan using inbox_recipient on" in plan, plan
    assert "Sort" not in plan and "Seq Scan" not in plan, plan
    assert "Rows Removed by Filter" not in plan, plan
