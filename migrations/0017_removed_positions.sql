-- Past the feed positions of every event removed from history (prune, retention): the id of the
-- last transaction that removed some, which began after every removed event's had ended. A store
-- restored into another server must have that server past it, as past the positions of the events
-- it holds (`feed::epoch_needed`), or consumers holding the positions of removed events would skip
-- the events stored next; once every event was removed, nothing else says where they were. A
-- removal writes it in the transaction that drops a month or deletes rows.
create table removed_positions (below_xid bigint not null);
-- Stores pruned before: the positions of the latest events of each account (0008) are the best
-- left of the removed events' (rows written before 0008 have none).
insert into removed_positions select coalesce(max(feed_xid), 0) from latest_events;
