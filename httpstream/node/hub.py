# -*- test-case-name: tests.node.test_hub,tests.node.test_hub_tagsfilter -*-
"""
The hub: which local clients are subscribed to which channel, and the fan-out of a publication to them with
L{httpstream.node.frames.PublicationFrames}, encoded once per protocol and shared by every subscriber.

A subscriber that sent a publication tags filter (L{httpstream.protocol.tagsfilter}) is kept apart from the others,
in the group of its filter: a publication is matched once per distinct filter of the channel, not once per
subscriber, and the subscribers without a filter go the way they went before filters existed.
"""

from __future__ import annotations

from typing import Any, Optional

from httpstream.interfaces import IClient
from httpstream.protocol.tagsfilter import TagsFilter


class FilterGroups:
    """The subscribers of one channel that sent a tags filter, by filter (equal filters make one group)."""

    __slots__ = ("_groups", "_filterOf")

    def __init__(self) -> None:
        self._groups: dict[TagsFilter, dict[str, IClient]] = {}
        self._filterOf: dict[str, TagsFilter] = {}

    def __len__(self) -> int:
        return len(self._filterOf)

    def add(self, client: IClient, tagsFilter: TagsFilter) -> None:
        self.remove(client)
        self._filterOf[client.clientID] = tagsFilter
        self._groups.setdefault(tagsFilter, {})[client.clientID] = client

    def remove(self, client: IClient) -> bool:
        """@return: whether C{client} was in a group."""
        tagsFilter = self._filterOf.pop(client.clientID, None)
        if tagsFilter is None:
            return False
        members = self._groups[tagsFilter]
        del members[client.clientID]
        if not members:
            del self._groups[tagsFilter]
        return True

    def clients(self) -> list[IClient]:
        return [client for members in self._groups.values() for client in members.values()]

    def numFilters(self) -> int:
        """How many distinct filters the channel's subscribers sent."""
        return len(self._groups)

    def deliver(self, frames: Any) -> int:
        """
        Match C{frames}' publication once per filter: the members of a matching group get it, the others pass
        it (a positioned subscription still moves its position past it). @return: how many subscribers it did not
        reach.
        """
        tags = frames.publication.tags
        dropped = 0
        # Copies: a delivery can end a subscription (a slow client is cut off) and so change these dicts.
        for tagsFilter, members in list(self._groups.items()):
            clients = list(members.values())
            if tagsFilter.matches(tags):
                for client in clients:
                    client.deliverPublication(frames)
            else:
                dropped += len(clients)
                for client in clients:
                    client.passPublication(frames)
        return dropped


class Hub:
    """Channel -> subscribers of this node."""

    def __init__(self) -> None:
        # The subscribers without a tags filter, and (only for channels that have any) those with one.
        self._subscribers: dict[str, dict[str, IClient]] = {}
        self._filtered: dict[str, FilterGroups] = {}

    def add(self, channel: str, client: IClient, tagsFilter: Optional[TagsFilter] = None) -> bool:
        """
        Subscribe a client, with the tags filter its subscription sent (None: every publication).
        @return: True when it is the channel's first local subscriber.
        """
        first = channel not in self._subscribers and channel not in self._filtered
        self._remove(channel, client)
        if tagsFilter is None:
            self._subscribers.setdefault(channel, {})[client.clientID] = client
        else:
            groups = self._filtered.get(channel)
            if groups is None:
                groups = self._filtered[channel] = FilterGroups()
            groups.add(client, tagsFilter)
        return first

    def remove(self, channel: str, client: IClient) -> bool:
        """Unsubscribe a client. @return: True when the channel has no local subscriber left."""
        return self._remove(channel, client) and channel not in self._subscribers and channel not in self._filtered

    def _remove(self, channel: str, client: IClient) -> bool:
        subscribers = self._subscribers.get(channel)
        if subscribers is not None and subscribers.pop(client.clientID, None) is not None:
            if not subscribers:
                del self._subscribers[channel]
            return True
        groups = self._filtered.get(channel)
        if groups is not None and groups.remove(client):
            if not groups:
                del self._filtered[channel]
            return True
        return False

    def deliverPublication(self, channel: str, frames: Any) -> int:
        """
        Hand a publication to the subscribers of C{channel}: all of those without a tags filter, and those whose
        filter matches its tags. @return: how many subscribers a filter kept it from.
        """
        subscribers = self._subscribers.get(channel)
        if subscribers is not None:
            for client in list(subscribers.values()):
                client.deliverPublication(frames)
        groups = self._filtered.get(channel)
        if groups is None:
            return 0
        return groups.deliver(frames)

    def filterGroups(self, channel: str) -> Optional[FilterGroups]:
        """The subscribers of C{channel} with a tags filter, or None when it has none."""
        return self._filtered.get(channel)

    def subscribers(self, channel: str) -> list[IClient]:
        everyone = list(self._subscribers.get(channel, {}).values())
        groups = self._filtered.get(channel)
        if groups is not None:
            everyone.extend(groups.clients())
        return everyone

    def channels(self) -> list[str]:
        return list(self._subscribers) + [channel for channel in self._filtered if channel not in self._subscribers]

    def numSubscriptions(self) -> int:
        return sum(len(s) for s in self._subscribers.values()) + sum(len(g) for g in self._filtered.values())
