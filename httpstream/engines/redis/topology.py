# -*- test-case-name: tests.engines.test_redis_sharding -*-
"""
The Redis an engine uses, from the configuration: one Redis (C{redis_address}), several as shards (addresses
separated by spaces, a list in a file), or Redis Clusters (C{redis_cluster_address}: one entry per cluster, its
seeds comma-separated; several entries are shards too). Each is an L{IRedisRouter} to start as a service.
"""

from __future__ import annotations

from typing import Any, Union

from httpstream.engines.redis.cluster import RedisCluster
from httpstream.engines.redis.sharding import ShardRing
from httpstream.engines.redis.shard import RedisShard

__all__ = ["routerFromConfig"]


def routerFromConfig(reactor: Any, config: Any, **kwargs: Any) -> Union[RedisShard, ShardRing, RedisCluster]:
    """
    The router for the C{redis_*} keys of a L{httpstream.config.Config}; C{kwargs} go to each L{RedisShard}.

    @raise ValueError: an address that does not parse.
    """
    shards: list[Any]
    if config.redis_cluster_address:
        shards = [
            RedisCluster(
                reactor,
                [seed.strip() for seed in entry.split(",")],
                prefix=config.redis_prefix,
                user=config.redis_user,
                password=config.redis_password,
                tls=config.redis_tls,
                **kwargs,
            )
            for entry in config.redis_cluster_address
        ]
    else:
        addresses = (config.redis_url or config.redis_address).split()
        shards = [RedisShard.fromConfig(reactor, config, address, **kwargs) for address in addresses]
    return shards[0] if len(shards) == 1 else ShardRing(shards)
