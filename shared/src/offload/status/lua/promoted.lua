-- A claimed job's message was published and confirmed: release its lease. Returns 1.
redis.call('ZREM', P .. ':scheduled', id)
return 1
