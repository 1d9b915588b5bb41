#!/usr/bin/env bash
# The compatibility subset of the real-cluster suite against another RocketMQ implementation:
#   scripts/test-compat.sh java4     # Apache RocketMQ 4.9
#   scripts/test-compat.sh rust      # rocketmq-rust 1.0.0
# (The whole suite runs against java5, the default, in scripts/test.sh.) The subset: concurrent
# consumption with a rebalance among members, retry with growing reconsume times and DLQ, orderly,
# broadcasting, the Wasm router plugin end to end through `rmq-wasm run`, and (Java only, skipped
# with a note on rust) pull pacing against a slave that serves no reads — the case 4.9 answers
# with PULL_RETRY_IMMEDIATELY —, ACL 1.0 signing and mixed groups with the 4.9 Java consumer;
# `peek` and `reset-offset` (4.9 pushes RESET_CONSUMER_CLIENT_OFFSET to ours and the Java consumer).
# `--workspace`, as scripts/test.sh, so that features unify alike and nothing is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:?usage: scripts/test-compat.sh java4|rust}
export RMQ_CLUSTER_FLAVOUR=$flavour
# The test build first (a no-op after scripts/test.sh's): its `cluster` binary starts the one
# cluster every binary below shares.
cargo test --workspace --no-run --quiet
exec "${CARGO_TARGET_DIR:-target}/debug/cluster" run --flavour "$flavour" -- cargo test --workspace \
  --test consumer --test consumer_modes --test wasm_cli --test topologies \
  --test acl --test mixed_group_java --test ops -- \
  clustering_members_split_queues_and_lose_nothing \
  a_failing_message_comes_back_with_growing_reconsume_times_then_succeeds \
  a_message_that_always_fails_ends_in_the_dlq \
  orderly_keeps_send_order_per_key_across_a_suspend_and_one_holder_per_queue \
  broadcasting_delivers_everything_to_everyone_and_local_offsets_survive_a_restart \
  run_consumes_with_a_plugin_from_a_toml_file_and_shuts_down \
  a_slave_that_serves_no_reads_is_not_polled_in_a_busy_loop \
  signed_requests_are_accepted_and_a_wrong_secret_is_refused_naming_the_access_key \
  our_consumer_and_the_java_push_consumer_split_a_group_and_hand_over_without_loss \
  an_orderly_group_of_ours_and_the_java_consumer_never_runs_a_queue_on_both \
  peek_prints_every_field_and_follows_new_messages \
  reset_offset_rewinds_running_consumers_ours_and_javas
