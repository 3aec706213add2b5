"""Every Redis metric family the sidecar emits: name, type, help and labels, in one table.

Names, types and label names are redis_exporter 1.45's, so its dashboards and alerts work
unchanged; the deliberate deviations (each listed in docs/metrics.md) are marked `# deviation`.
`INFO_FIELDS` maps a plain INFO (or CLUSTER INFO) field to its family; `FAMILIES` declares the
families built from structured fields and from the other commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.exposition import Family, Labels

GAUGE = "gauge"
COUNTER = "counter"
SUMMARY = "summary"


@dataclass(frozen=True, slots=True)
class FieldMetric:
    """A plain INFO field exported as one unlabelled sample, its value divided by `divisor`."""

    field: str
    name: str
    type: str
    help: str
    divisor: float = 1.0


@dataclass(frozen=True, slots=True)
class FamilySpec:
    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()

    def family(self) -> Family:
        return Family(self.name, self.type, self.help)

    def labels_of(self, *values: str) -> Labels:
        """The sample labels for `values`, given in the order of this row's label names (a
        ValueError when their number differs)."""
        return tuple(zip(self.labels, values, strict=True))


def _g(field: str, name: str, help: str, divisor: float = 1.0) -> FieldMetric:
    return FieldMetric(field, "redis_" + name, GAUGE, help, divisor)


def _c(field: str, name: str, help: str) -> FieldMetric:
    return FieldMetric(field, "redis_" + name, COUNTER, help)


INFO_FIELDS: tuple[FieldMetric, ...] = (
    # Server
    _g("uptime_in_seconds", "uptime_in_seconds", "Seconds since the Redis server started."),
    _g("process_id", "process_id", "PID of the Redis server process."),
    _g("io_threads_active", "io_threads_active", "1 if the I/O threads are active."),
    # Clients
    _g("connected_clients", "connected_clients", "Client connections, replicas excluded."),
    _g("blocked_clients", "blocked_clients", "Clients blocked in a blocking call."),
    _g("tracking_clients", "tracking_clients", "Clients being tracked (CLIENT TRACKING)."),
    _g("clients_in_timeout_table", "clients_in_timeout_table",
       "Clients in the blocked-clients timeout table."),
    _g("client_longest_output_list", "client_longest_output_list",
       "Longest output list among clients (Redis < 5)."),
    _g("client_biggest_input_buf", "client_biggest_input_buf",
       "Biggest input buffer among clients (Redis < 5)."),
    _g("client_recent_max_output_buffer", "client_recent_max_output_buffer_bytes",
       "Biggest client output buffer in the recent past, in bytes."),
    _g("client_recent_max_input_buffer", "client_recent_max_input_buffer_bytes",
       "Biggest client input buffer in the recent past, in bytes."),
    _g("cluster_connections", "cluster_connections", "Connections on the cluster bus."),
    _g("current_client_thread", "current_client_thread",
       "Server thread serving the INFO client (KeyDB)."),
    # Memory
    _g("used_memory", "memory_used_bytes", "Bytes allocated by Redis's allocator."),
    _g("used_memory_rss", "memory_used_rss_bytes", "Resident set size of the Redis process."),
    _g("used_memory_peak", "memory_used_peak_bytes", "Peak of memory_used_bytes."),
    _g("used_memory_overhead", "memory_used_overhead_bytes",
       "Bytes used for internal structures rather than data."),
    _g("used_memory_startup", "memory_used_startup_bytes", "Bytes used at start-up."),
    _g("used_memory_dataset", "memory_used_dataset_bytes", "Bytes used by the dataset."),
    _g("used_memory_lua", "memory_used_lua_bytes", "Bytes used by the Lua engine."),
    _g("used_memory_scripts", "memory_used_scripts_bytes", "Bytes used by cached scripts."),
    _g("number_of_cached_scripts", "number_of_cached_scripts", "Scripts in the script cache."),
    _g("maxmemory", "memory_max_bytes", "The maxmemory limit in bytes (0: no limit)."),
    _g("maxmemory_reservation", "memory_max_reservation_bytes",
       "Memory reserved up front for the dataset, in bytes (KeyDB)."),
    _g("maxmemory_desired_reservation", "memory_max_reservation_desired_bytes",
       "Memory the server wants reserved up front for the dataset, in bytes (KeyDB)."),
    _g("maxfragmentationmemory_reservation", "memory_max_fragmentation_reservation_bytes",
       "Memory reserved up front for fragmentation, in bytes (KeyDB)."),
    _g("maxfragmentationmemory_desired_reservation",
       "memory_max_fragmentation_reservation_desired_bytes",
       "Memory the server wants reserved up front for fragmentation, in bytes (KeyDB)."),
    _g("total_system_memory", "total_system_memory_bytes",  # deviation: on by default
       "Memory of the host Redis runs on, in bytes."),
    _g("allocator_allocated", "allocator_allocated_bytes", "Bytes allocated by the allocator."),
    _g("allocator_active", "allocator_active_bytes", "Bytes in the allocator's active pages."),
    _g("allocator_resident", "allocator_resident_bytes", "Bytes resident in the allocator."),
    _g("allocator_frag_ratio", "allocator_frag_ratio", "Allocator fragmentation ratio."),
    _g("allocator_frag_bytes", "allocator_frag_bytes", "Allocator fragmentation in bytes."),
    _g("allocator_rss_ratio", "allocator_rss_ratio", "Allocator resident to active ratio."),
    _g("allocator_rss_bytes", "allocator_rss_bytes", "Allocator resident minus active bytes."),
    _g("mem_fragmentation_ratio", "mem_fragmentation_ratio",
       "Ratio of resident memory to memory_used_bytes."),
    _g("mem_fragmentation_bytes", "mem_fragmentation_bytes",
       "Resident memory minus memory_used_bytes."),
    _g("mem_not_counted_for_evict", "mem_not_counted_for_eviction_bytes",
       "Bytes of replication and AOF buffers, not counted against maxmemory."),
    _g("mem_clients_slaves", "mem_clients_slaves", "Bytes used by replica client buffers."),
    _g("mem_clients_normal", "mem_clients_normal", "Bytes used by normal client buffers."),
    _g("lazyfree_pending_objects", "lazyfree_pending_objects",
       "Objects waiting to be freed in the background."),
    _g("active_defrag_running", "active_defrag_running", "1 while active defragmentation runs."),
    # Persistence
    _g("loading", "loading_dump_file", "1 while a dump file is being loaded."),
    _g("rdb_changes_since_last_save", "rdb_changes_since_last_save",
       "Changes since the last RDB save."),
    _g("rdb_bgsave_in_progress", "rdb_bgsave_in_progress", "1 while an RDB save runs."),
    _g("rdb_last_save_time", "rdb_last_save_timestamp_seconds",
       "Unix time of the last successful RDB save."),
    _g("rdb_last_bgsave_status", "rdb_last_bgsave_status", "1 if the last RDB save succeeded."),
    _g("rdb_last_bgsave_time_sec", "rdb_last_bgsave_duration_sec",
       "Seconds the last RDB save took."),
    _g("rdb_current_bgsave_time_sec", "rdb_current_bgsave_duration_sec",
       "Seconds the running RDB save has taken so far (-1: none)."),
    _g("rdb_last_cow_size", "rdb_last_cow_size_bytes",
       "Copy-on-write bytes during the last RDB save."),
    _g("aof_enabled", "aof_enabled", "1 if AOF persistence is on."),
    _g("aof_rewrite_in_progress", "aof_rewrite_in_progress", "1 while an AOF rewrite runs."),
    _g("aof_rewrite_scheduled", "aof_rewrite_scheduled",
       "1 if an AOF rewrite waits for an RDB save to end."),
    _g("aof_last_rewrite_time_sec", "aof_last_rewrite_duration_sec",
       "Seconds the last AOF rewrite took."),
    _g("aof_current_rewrite_time_sec", "aof_current_rewrite_duration_sec",
       "Seconds the running AOF rewrite has taken so far (-1: none)."),
    _g("aof_last_bgrewrite_status", "aof_last_bgrewrite_status",
       "1 if the last AOF rewrite succeeded."),
    _g("aof_last_write_status", "aof_last_write_status", "1 if the last AOF write succeeded."),
    _g("aof_last_cow_size", "aof_last_cow_size_bytes",
       "Copy-on-write bytes during the last AOF rewrite."),
    _g("aof_current_size", "aof_current_size_bytes", "Current AOF size in bytes."),
    _g("aof_base_size", "aof_base_size_bytes", "AOF size at the last rewrite, in bytes."),
    _g("aof_pending_rewrite", "aof_pending_rewrite", "1 if an AOF rewrite is scheduled."),
    _g("aof_buffer_length", "aof_buffer_length", "Size of the AOF buffer."),
    _g("aof_rewrite_buffer_length", "aof_rewrite_buffer_length",
       "Size of the AOF rewrite buffer (Redis < 7)."),
    _g("aof_pending_bio_fsync", "aof_pending_bio_fsync",
       "fsync jobs waiting in the background I/O queue."),
    _g("aof_delayed_fsync", "aof_delayed_fsync", "Delayed fsync counter."),
    _g("module_fork_in_progress", "module_fork_in_progress", "1 while a module fork runs."),
    _g("module_fork_last_cow_size", "module_fork_last_cow_size",
       "Copy-on-write bytes during the last module fork."),
    # Stats
    _c("total_connections_received", "connections_received_total",
       "Connections accepted by the server."),
    _c("total_commands_processed", "commands_processed_total",
       "Commands processed by the server."),
    _c("rejected_connections", "rejected_connections_total",
       "Connections rejected because of maxclients."),
    _c("total_net_input_bytes", "net_input_bytes_total", "Bytes read from the network."),
    _c("total_net_output_bytes", "net_output_bytes_total", "Bytes written to the network."),
    _c("expired_keys", "expired_keys_total", "Keys expired."),
    _g("expired_stale_perc", "expired_stale_percentage",
       "Estimated percentage of keys that are expired but not yet deleted."),
    FieldMetric("expired_time_cap_reached_count", "redis_expired_time_cap_reached_total",
                COUNTER,  # deviation: gauge in redis_exporter 1.45
                "Active expire cycles stopped early by their time limit."),
    _c("evicted_keys", "evicted_keys_total", "Keys evicted because of maxmemory."),
    _c("keyspace_hits", "keyspace_hits_total", "Successful key lookups."),
    _c("keyspace_misses", "keyspace_misses_total", "Failed key lookups."),
    _g("pubsub_channels", "pubsub_channels", "Pub/sub channels with subscribers."),
    _g("pubsub_patterns", "pubsub_patterns", "Pub/sub patterns with subscribers."),
    _g("latest_fork_usec", "latest_fork_seconds", "Duration of the latest fork, in seconds.",
       divisor=1e6),
    _g("migrate_cached_sockets", "migrate_cached_sockets_total",  # compatibility name
       "Sockets open for MIGRATE (a gauge despite its name)."),
    _g("slave_expires_tracked_keys", "slave_expires_tracked_keys",
       "Keys tracked for expiry on a writable replica."),
    _g("active_defrag_hits", "defrag_hits", "Values moved by active defragmentation."),
    _g("active_defrag_misses", "defrag_misses", "Allocations active defragmentation skipped."),
    _g("active_defrag_key_hits", "defrag_key_hits", "Keys actively defragmented."),
    _g("active_defrag_key_misses", "defrag_key_misses", "Keys active defragmentation skipped."),
    _g("tracking_total_keys", "tracking_total_keys", "Keys tracked for client-side caching."),
    _g("tracking_total_items", "tracking_total_items",
       "Items (key-client pairs) tracked for client-side caching."),
    _g("tracking_total_prefixes", "tracking_total_prefixes",
       "Prefixes tracked for broadcast client-side caching."),
    _c("unexpected_error_replies", "unexpected_error_replies",  # compatibility name
       "Unexpected error replies (AOF load or replication errors)."),
    _c("total_error_replies", "total_error_replies",  # compatibility name
       "Error replies sent to clients."),
    _c("dump_payload_sanitizations", "dump_payload_sanitizations",  # compatibility name
       "Deep integrity validations of RESTORE payloads."),
    _c("total_reads_processed", "total_reads_processed",  # compatibility name
       "Read events processed."),
    _c("total_writes_processed", "total_writes_processed",  # compatibility name
       "Write events processed."),
    _c("io_threaded_reads_processed", "io_threaded_reads_processed",  # compatibility name
       "Read events processed by I/O threads."),
    _c("io_threaded_writes_processed", "io_threaded_writes_processed",  # compatibility name
       "Write events processed by I/O threads."),
    _c("storage_provider_read_hits", "storage_provider_read_hits",  # compatibility name
       "Reads served by the storage provider (KeyDB FLASH)."),
    _c("storage_provider_read_misses", "storage_provider_read_misses",  # compatibility name
       "Reads the storage provider could not serve (KeyDB FLASH)."),
    _c("cached_keys", "cached_keys_total",
       "Keys cached in memory from the storage provider (KeyDB FLASH)."),
    _g("server_threads", "server_threads_total",  # compatibility name
       "Worker threads of the server (KeyDB; a gauge despite its name)."),
    _g("long_lock_waits", "long_lock_waits_total",  # compatibility name
       "Waits for the global lock that took long (KeyDB; gauge as in redis_exporter)."),
    _g("sync_full", "replica_resyncs_full", "Full resynchronisations with replicas."),
    _g("sync_partial_ok", "replica_partial_resync_accepted",
       "Partial resynchronisation requests accepted."),
    _g("sync_partial_err", "replica_partial_resync_denied",
       "Partial resynchronisation requests denied."),
    # Replication
    _g("connected_slaves", "connected_slaves", "Connected replicas."),
    _g("master_repl_offset", "master_repl_offset", "The server's replication offset."),
    _g("second_repl_offset", "second_repl_offset",
       "Offset up to which the previous replication ID is accepted."),
    _g("repl_backlog_active", "repl_backlog_is_active", "1 if the replication backlog is on."),
    _g("repl_backlog_size", "replication_backlog_bytes",
       "Size of the replication backlog buffer, in bytes."),
    _g("repl_backlog_first_byte_offset", "repl_backlog_first_byte_offset",
       "Replication offset of the backlog's first byte."),
    _g("repl_backlog_histlen", "repl_backlog_history_bytes", "Bytes of data in the backlog."),
    _g("slave_priority", "slave_priority", "Replica priority for failover."),
    # CPU
    _c("used_cpu_sys", "cpu_sys_seconds_total", "System CPU seconds of the server."),
    _c("used_cpu_user", "cpu_user_seconds_total", "User CPU seconds of the server."),
    _c("used_cpu_sys_children", "cpu_sys_children_seconds_total",
       "System CPU seconds of background processes."),
    _c("used_cpu_user_children", "cpu_user_children_seconds_total",
       "User CPU seconds of background processes."),
    _c("used_cpu_sys_main_thread", "cpu_sys_main_thread_seconds_total",
       "System CPU seconds of the main thread."),
    _c("used_cpu_user_main_thread", "cpu_user_main_thread_seconds_total",
       "User CPU seconds of the main thread."),
    # Cluster (INFO) and CLUSTER INFO
    _g("cluster_enabled", "cluster_enabled", "1 if cluster mode is on."),
    _g("cluster_state", "cluster_state", "1 if the cluster state is ok."),
    _g("cluster_slots_assigned", "cluster_slots_assigned", "Slots assigned to a node."),
    _g("cluster_slots_ok", "cluster_slots_ok", "Slots whose node is healthy."),
    _g("cluster_slots_pfail", "cluster_slots_pfail", "Slots whose node is possibly failing."),
    _g("cluster_slots_fail", "cluster_slots_fail", "Slots whose node is failing."),
    _g("cluster_known_nodes", "cluster_known_nodes", "Nodes known to this node."),
    _g("cluster_size", "cluster_size", "Master nodes serving at least one slot."),
    _g("cluster_current_epoch", "cluster_current_epoch", "The cluster's current epoch."),
    _g("cluster_my_epoch", "cluster_my_epoch", "This node's config epoch."),
    FieldMetric("cluster_stats_messages_sent", "redis_cluster_messages_sent_total",
                COUNTER,  # deviation: gauge in redis_exporter 1.45
                "Messages sent on the cluster bus."),
    FieldMetric("cluster_stats_messages_received", "redis_cluster_messages_received_total",
                COUNTER,  # deviation: gauge in redis_exporter 1.45
                "Messages received on the cluster bus."),
)

BY_FIELD: dict[str, FieldMetric] = {m.field: m for m in INFO_FIELDS}

# Any other `cluster_*` field (e.g. cluster_stats_messages_ping_sent) is exported under its own
# name as a gauge, a dash in it written `_` (`..._auth-req_sent` -> `..._auth_req_sent`), as
# redis_exporter does; see `generic_cluster_field`.
GENERIC_CLUSTER_PREFIX = "cluster_"

_generic: dict[str, FieldMetric] = {}


def generic_cluster_field(field: str) -> FieldMetric | None:
    metric = _generic.get(field)
    if metric is None:
        name = field.replace("-", "_")
        if not (name.isascii() and name.replace("_", "a").isalnum()) or len(_generic) > 256:
            return None
        help = "CLUSTER INFO field " + field + "."
        if field.startswith("cluster_stats_messages_"):
            kind = field[len("cluster_stats_messages_"):]
            help = "Cluster bus messages (type_direction: " + kind + ")."
        metric = _generic[field] = FieldMetric(field, "redis_" + name, GAUGE, help)
    return metric


_SPECS: tuple[FamilySpec, ...] = (
    # Server identity (identity.py)
    FamilySpec("redis_instance_info", GAUGE, "Information about the Redis instance.",
               ("role", "redis_version", "redis_build_id", "redis_mode", "os",
                "maxmemory_policy", "tcp_port", "run_id", "process_id",
                "server_name", "server_version")),  # deviation: the last two added
    FamilySpec("redis_start_time_seconds", GAUGE,
               "Start time of the Redis instance since unix epoch in seconds."),
    # Keyspace (keyspace.py)
    FamilySpec("redis_db_keys", GAUGE, "Keys in the database.", ("db",)),
    FamilySpec("redis_db_keys_expiring", GAUGE, "Keys with an expiry in the database.", ("db",)),
    FamilySpec("redis_db_avg_ttl_seconds", GAUGE,
               "Average TTL of the database's expiring keys, in seconds (0: none).", ("db",)),
    FamilySpec("redis_db_keys_cached", GAUGE, "Cached keys in the database (KeyDB).", ("db",)),
    # Commandstats, errorstats, latencystats (commandstats.py)
    FamilySpec("redis_commands_total", COUNTER, "Calls per command.", ("cmd",)),
    FamilySpec("redis_commands_duration_seconds_total", COUNTER,
               "Seconds spent executing each command.", ("cmd",)),
    FamilySpec("redis_commands_rejected_calls_total", COUNTER,  # deviation: help corrected
               "Calls rejected before execution (unknown subcommand, arity, ACL, OOM...).",
               ("cmd",)),
    FamilySpec("redis_commands_failed_calls_total", COUNTER,  # deviation: help corrected
               "Calls that failed during execution.", ("cmd",)),
    FamilySpec("redis_latency_percentiles_usec", SUMMARY,
               "Latency percentiles per command, in microseconds (quantile 0..1).",
               ("cmd", "quantile")),
    FamilySpec("redis_errors_total", COUNTER, "Error replies per error code.", ("err",)),
    # Replication (replication.py)
    FamilySpec("redis_connected_slave_offset_bytes", GAUGE,
               "Replication offset acknowledged by a connected replica.",
               ("slave_ip", "slave_port", "slave_state")),
    FamilySpec("redis_connected_slave_lag_seconds", GAUGE,
               "Seconds since a connected replica last acknowledged.",
               ("slave_ip", "slave_port", "slave_state")),
    FamilySpec("redis_master_link_up", GAUGE, "1 if the replica's link to its master is up.",
               ("master_host", "master_port")),
    FamilySpec("redis_master_last_io_seconds_ago", GAUGE,
               "Seconds since the replica last heard from its master.",
               ("master_host", "master_port")),
    FamilySpec("redis_master_sync_in_progress", GAUGE,
               "1 while the replica syncs from its master.", ("master_host", "master_port")),
    FamilySpec("redis_slave_repl_offset", GAUGE, "The replica's replication offset.",
               ("master_host", "master_port")),
    FamilySpec("redis_slave_info", GAUGE, "Information about the Redis replica.",
               ("master_host", "master_port", "read_only")),
    # SLOWLOG (slowlog.py)
    FamilySpec("redis_slowlog_length", GAUGE, "Entries in the slow log."),
    FamilySpec("redis_slowlog_last_id", GAUGE, "ID of the latest slow log entry."),
    FamilySpec("redis_last_slow_execution_duration_seconds", GAUGE,
               "Execution time of the latest slow log entry, in seconds."),
    # LATENCY LATEST (latency.py)
    FamilySpec("redis_latency_spike_last", GAUGE,
               "Unix time of the latest latency spike of the event.", ("event_name",)),
    FamilySpec("redis_latency_spike_duration_seconds", GAUGE,
               "Duration of the latest latency spike of the event, in seconds.",
               ("event_name",)),
    # CONFIG GET (config_metrics.py)
    FamilySpec("redis_config_maxmemory", GAUGE, "The maxmemory setting in bytes."),
    FamilySpec("redis_config_maxclients", GAUGE, "The maxclients setting."),
    FamilySpec("redis_config_io_threads", GAUGE, "The io-threads setting."),
    # Sentinel (sentinel.py)
    FamilySpec("redis_sentinel_masters", GAUGE, "Masters this sentinel watches."),
    FamilySpec("redis_sentinel_tilt", GAUGE, "1 if the sentinel is in TILT mode."),
    FamilySpec("redis_sentinel_running_scripts", GAUGE, "Sentinel scripts running now."),
    FamilySpec("redis_sentinel_scripts_queue_length", GAUGE, "Sentinel scripts queued."),
    FamilySpec("redis_sentinel_simulate_failure_flags", GAUGE,
               "Sentinel failure-simulation flags."),
    FamilySpec("redis_sentinel_master_status", GAUGE,
               "1 if the master's status on this sentinel is ok.",
               ("master_name", "master_address", "master_status")),
    FamilySpec("redis_sentinel_master_slaves", GAUGE, "Replicas of the master.",
               ("master_name", "master_address")),
    FamilySpec("redis_sentinel_master_sentinels", GAUGE, "Sentinels watching the master.",
               ("master_name", "master_address")),
    FamilySpec("redis_sentinel_master_ok_slaves", GAUGE,
               "Replicas of the master not subjectively or objectively down.",
               ("master_name", "master_address")),
    FamilySpec("redis_sentinel_master_ok_sentinels", GAUGE,
               "Sentinels watching the master that are not down, this one included.",
               ("master_name", "master_address")),
    FamilySpec("redis_sentinel_master_ckquorum_status", GAUGE,  # deviation: message bounded
               "1 if SENTINEL CKQUORUM succeeds; message is its reply code (OK, NOQUORUM, ERR).",
               ("master_name", "message")),
)

FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in _SPECS}
