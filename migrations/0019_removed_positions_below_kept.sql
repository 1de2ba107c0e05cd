-- A consumer may hold the feed position of an event removed before 0017 (prune deleted rows and
-- kept no record of them). 0017 took the newest position of `latest_events` as where such
-- positions end, but a store whose rows there were written before 0008 holds none: its bound was
-- 0, and every such position was refused as "not a position this service gave out", so that the
-- consumer could only start over. No record says which events were removed then; a position below
-- the newest event kept, and of no event kept, can only be of a removed one (this store gave out
-- no other), so such positions are taken from now on, as later removals' are.
update removed_positions
set below_xid = greatest(below_xid, (select coalesce(max(feed_xid), 0) from events));
