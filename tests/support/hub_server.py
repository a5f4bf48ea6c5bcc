"""The local Hub the tests push to: :mod:`realign_data.publish.hub_server` (also ``realign-data hub serve DIR``)."""

from realign_data.publish.hub_server import HubServer, Repo  # noqa: F401
from realign_data.publish.hub_server_http import HubError  # noqa: F401
