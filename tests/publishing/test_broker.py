"""Publishing task messages straight through kombu: a broken link is rebuilt whole."""

import uuid

import pytest
from celery import current_app
from kombu import Exchange, Queue

from observers_app.exceptions import BrokerUnavailable
from observers_app.publishing import broker


@pytest.mark.django_db
def test_a_link_whose_connection_died_is_rebuilt_whole_on_the_next_publish():
    broker.publish_confirmed([("observers.test.none", "[]")])
    dead = broker._state.link
    assert dead is not None
    dead.connection.connection.sock.close()  # as a broker restart leaves it: the socket is gone

    with pytest.raises(BrokerUnavailable):
        broker.publish_confirmed([("observers.test.none", "[1]")])
    broker.publish_confirmed([("observers.test.none", "[2]")])  # a new connection, channel, queues

    link = broker._state.link
    assert link is not None and link is not dead
    assert all(route.queue.channel is link.channel for route in link.routes.values())
    # The app's own queue objects are never bound to a channel (one bound to a dead channel stays dead).
    assert not any(queue.is_bound for queue in current_app.amqp.queues.values())


def full_queue() -> Queue:
    """A queue that holds one message and refuses the next ones (basic.nack), as a full deliver queue
    does."""
    name = f"observers-test-full-{uuid.uuid4().hex[:8]}"
    return Queue(
        name,
        Exchange(name),
        routing_key=name,
        durable=False,
        auto_delete=False,
        queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )


@pytest.fixture
def refusing_queue():
    queue = full_queue()
    yield queue
    link = broker._state.link
    if link is not None:
        link.channel.queue_delete(queue.name)
        link.channel.exchange_delete(queue.name)


@pytest.mark.django_db
def test_published_messages_are_confirmed_later_and_their_refusals_stay_theirs(refusing_queue):
    published = broker.publish([("observers.test.none", f"[{n}]") for n in range(3)], queue=refusing_queue)
    # Meanwhile the same thread publishes and waits for others (as a callback's publish does): it
    # waits for its own confirms only, and never takes the refusals the first ones got.
    broker.publish_confirmed([("observers.test.none", "[9]")])

    with pytest.raises(BrokerUnavailable) as refused:
        published.confirm()
    assert refused.value.unsent == [1, 2]  # the queue held the first, refused the others
    broker.publish_confirmed([("observers.test.none", "[10]")])  # the link stays usable


@pytest.mark.django_db
def test_messages_whose_link_was_lost_before_their_confirms_are_all_unsent():
    published = broker.publish([("observers.test.none", "[1]"), ("observers.test.none", "[2]")])
    broker._drop_link()  # as a failed publish by a callback on this thread leaves it

    with pytest.raises(BrokerUnavailable) as lost:
        published.confirm()
    assert lost.value.unsent == [0, 1]
    broker.publish_confirmed([("observers.test.none", "[3]")])  # a new link


@pytest.mark.django_db
def test_a_publish_that_fails_raises_only_when_confirmed():
    broker.publish_confirmed([("observers.test.none", "[]")])
    link = broker._state.link
    assert link is not None
    link.connection.connection.sock.close()

    published = broker.publish([("observers.test.none", "[1]")])  # does not raise
    with pytest.raises(BrokerUnavailable) as failed:
        published.confirm()
    assert failed.value.unsent == [0]
