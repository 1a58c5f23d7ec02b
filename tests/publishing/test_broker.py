"""Publishing task messages straight through kombu: a broken link is rebuilt whole."""

import pytest
from celery import current_app

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
