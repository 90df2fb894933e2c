"""Bounds of the cluster layer, in one place: batch sizes per call, deadlines per call, retries."""

RPC_TIMEOUT_S = 5.0  # one node-to-node call, from send to answer
WRITE_CALL_TIMEOUT_S = 2.5  # a coordinator's call to a partition's acting node; then it tries the next replica
REPLICA_CALL_TIMEOUT_S = 2.0  # a master's confirmation call to one replica; then it asks another
WRITE_DEADLINE_S = 10.0  # a write's tries at the replicas of its partitions, all together (then 503)
WRITE_RETRY_MIN_S = 0.05  # backoff between two tries of a write: doubles from this ...
WRITE_RETRY_MAX_S = 0.5  # ... up to this
APPLY_RECORDS_MAX = 4096  # records in one ApplyReq (bigger batches are split)
YIELD_EVERY = 64  # records (or ops) a batch handles between two checkpoints, so that searches interleave (256: p50 120 ms of searches during a 300 k load, 64: 68 ms)
# Ops a coordinator places (new ids, ring look-ups) between two checkpoints: a 1,000-line bulk held a node for one
# step of ~40 ms (MURMUR_SLOW_STEP_MS=25, a 200 k load: 47 such steps on n1, from the bulk's parse to its first send).
PLACE_EVERY = 256
STRAGGLERS_MAX = 256  # fan-out sends still under way after their write was acknowledged at W (then: wait for all)
WINDOW_ITEMS_MAX = 256  # terms in one WindowReq / ProbeReq
PROBE_IDS_MAX = 4096  # ids probed per term per call
GET_IDS_MAX = 2048  # ids in one GetReq
WINDOW_LIMIT_MAX = 16384  # ids one window may return
WRITE_OPS_MAX = 10_000  # ops in one WriteReq (a bulk request's size limit)
ID_RETRIES_MAX = 16  # a generated id that collides is replaced this many times at most
OUTBOX_SCAN_INTERVAL_S = 1.0  # the background outbox driver wakes this often
OUTBOX_BATCH_MAX = 2000  # outbox entries driven per pass
OUTBOX_REPLICA_GRACE_S = 30.0  # a replica hands an outbox entry it still holds after this long to the acting node
REPAIRS_IN_FLIGHT_MAX = 64  # read repairs queued at once; more are dropped (anti-entropy catches them later)
PEER_PING_INTERVAL_S = 1.0  # how often each peer's liveness is checked for /cluster and /health
SEARCH_ROUNDS_MAX = 64  # window rounds one search may take
SEARCH_DEADLINE_S = 10.0  # a search that has not finished by then answers what it has, partial=true
RENDER_CACHE_MAX = 50_000  # tweets whose rendered JSON a coordinator keeps (~300 B each), by id and version
SEARCH_PEER_TIMEOUT_S = 2.0  # a local-first search's digest read from one replica; then it asks another
TRENDS_TAGS_MAX = 2000  # hashtags one node reports for /trends
ELECTION_ATTEMPTS_MAX = 6  # promise rounds one election tries before the write answers 503
SYNC_BUCKETS_MAX = 64  # digest buckets whose keys one KeysReq lists
ANTI_ENTROPY_INTERVAL_S = 2.0  # one partition is compared with one peer this often (a full pass: partitions x this)
STREAM_RANGES_MAX = 65_536  # token ranges in one PostingsReq
STREAM_IDS_MAX = 200_000  # posting ids in one PostingsResp page (a term's list is never cut)
STREAM_PAGE_TIMEOUT_S = 120.0  # one page of a postings stream (the first lists the source's terms in the ranges)
STREAM_TIMEOUT_S = 3600.0  # one node pulling every range it gains in a topology change
INSTALL_TIMEOUT_S = 60.0  # a node adopting a topology, including the wait for its older writes to end
# A write's coordinator routes around a replica suspected by gossip for longer than this (seconds), before it is
# declared dead; a shorter suspicion (a node slow for a moment) moves no mastership (coordinator._acting_for).
ROUTE_AROUND_SUSPECT_S = 1.0
LOCAL_ID_TRIES = 8  # sequence numbers a coordinator skips at most for an id it masters (coordinator._new_id)
