-- A store filled by calry-hooks 8612653 (tests/api/old_store/make.py).
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: rebuild_accounts(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.rebuild_accounts() RETURNS void
    LANGUAGE sql
    AS $$
    delete from state_changes;
    delete from accounts;
    insert into state_changes (workspace_id, integration_account_id, category, occurred_at,
                               hook_id, from_state, to_state)
    select workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, state
    from (select e.workspace_id, e.integration_account_id, s.category, e.occurred_at, e.hook_id,
                 s.state,
                 lag(s.state, 1, 'unknown') over (
                     partition by e.workspace_id, e.integration_account_id, s.category
                     order by e.occurred_at, e.hook_id) as from_state
          from events e join event_states s on s.event_type = e.event_type
          where e.integration_account_id is not null) runs
    where from_state <> state;
    insert into accounts (workspace_id, integration_account_id, account_state, account_since,
                          link_state, link_since, sync_state, sync_since)
    select workspace_id, integration_account_id,
           coalesce(max(to_state) filter (where category = 'account'), 'unknown'),
           max(occurred_at) filter (where category = 'account'),
           coalesce(max(to_state) filter (where category = 'link'), 'unknown'),
           max(occurred_at) filter (where category = 'link'),
           coalesce(max(to_state) filter (where category = 'sync'), 'unknown'),
           max(occurred_at) filter (where category = 'sync')
    from (select distinct on (workspace_id, integration_account_id, category)
                 workspace_id, integration_account_id, category, occurred_at, to_state
          from state_changes
          order by workspace_id, integration_account_id, category, occurred_at desc, hook_id desc)
         latest
    group by workspace_id, integration_account_id;
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: _sqlx_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public._sqlx_migrations (
    version bigint NOT NULL,
    description text NOT NULL,
    installed_on timestamp with time zone DEFAULT now() NOT NULL,
    success boolean NOT NULL,
    checksum bytea NOT NULL,
    execution_time bigint NOT NULL
);


--
-- Name: accounts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.accounts (
    workspace_id text NOT NULL COLLATE pg_catalog."C",
    integration_account_id text NOT NULL COLLATE pg_catalog."C",
    account_state text NOT NULL,
    account_since timestamp with time zone,
    link_state text NOT NULL,
    link_since timestamp with time zone,
    sync_state text NOT NULL,
    sync_since timestamp with time zone
);


--
-- Name: event_states; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.event_states (
    event_type text NOT NULL COLLATE pg_catalog."C",
    category text NOT NULL,
    state text NOT NULL
);


--
-- Name: events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.events (
    hook_id text NOT NULL COLLATE pg_catalog."C",
    workspace_id text NOT NULL COLLATE pg_catalog."C",
    integration_account_id text COLLATE pg_catalog."C",
    event_type text NOT NULL COLLATE pg_catalog."C",
    source text,
    result text,
    occurred_at timestamp with time zone NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    last_received_at timestamp with time zone DEFAULT now() NOT NULL,
    delivery_count integer DEFAULT 1 NOT NULL,
    signature_verified boolean NOT NULL,
    payload jsonb NOT NULL,
    feed_xid bigint DEFAULT ((pg_current_xact_id())::text)::bigint NOT NULL,
    feed_seq bigint NOT NULL,
    CONSTRAINT events_delivery_count_check CHECK ((delivery_count >= 1))
);


--
-- Name: events_feed_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.events_feed_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: events_feed_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.events_feed_seq OWNED BY public.events.feed_seq;


--
-- Name: latest_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.latest_events (
    workspace_id text NOT NULL COLLATE pg_catalog."C",
    integration_account_id text NOT NULL COLLATE pg_catalog."C",
    event_type text NOT NULL COLLATE pg_catalog."C",
    hook_id text NOT NULL COLLATE pg_catalog."C",
    result text,
    occurred_at timestamp with time zone NOT NULL
);


--
-- Name: state_changes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.state_changes (
    workspace_id text NOT NULL COLLATE pg_catalog."C",
    integration_account_id text NOT NULL COLLATE pg_catalog."C",
    category text NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    hook_id text NOT NULL COLLATE pg_catalog."C",
    from_state text NOT NULL,
    to_state text NOT NULL
);


--
-- Name: tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.tokens (
    id bigint NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    token_hash bytea NOT NULL,
    all_workspaces boolean NOT NULL,
    workspaces text[] DEFAULT '{}'::text[] NOT NULL COLLATE pg_catalog."C",
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    CONSTRAINT tokens_check CHECK ((all_workspaces OR (cardinality(workspaces) > 0)))
);


--
-- Name: tokens_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.tokens ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.tokens_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: workspaces; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workspaces (
    workspace_id text NOT NULL COLLATE pg_catalog."C",
    last_event_at timestamp with time zone NOT NULL
);


--
-- Name: events feed_seq; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events ALTER COLUMN feed_seq SET DEFAULT nextval('public.events_feed_seq'::regclass);


--
-- Data for Name: _sqlx_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public._sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (1, 'events', '2026-12-04 03:26:36.972344+00', true, '\xa0e92a21959fb1835af82ef8aaef12d2d7fd2cc2262ddf15b7712e83f5adec3bedc58554c30ee0d67c169588b310d35d', 15961662);
INSERT INTO public._sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (2, 'tokens', '2026-12-04 03:26:36.98925+00', true, '\x9fdb0142a7a74e210fe77ed3061dbf0140c616d6a0f46b04cdffbdcf852e6882269290b6105059c596804524665c6700', 10048499);
INSERT INTO public._sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (3, 'feed', '2026-12-04 03:26:36.999951+00', true, '\x9c63646e54c39904e03c83fcf5a6fc977a2d0b8655555330629a22311a0957f8b968707e38d361d966bc7996432fbe61', 8579904);
INSERT INTO public._sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (4, 'accounts', '2026-12-04 03:26:37.009239+00', true, '\xdb805b69eb52464795524edb8c7769ae1d53297a8555afc87b0b2be8b875eea8eef5f2aceabe5357861fed700c649380', 16932854);


--
-- Data for Name: accounts; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66', '4a905074-4dd9-426a-b5a9-cf7c9bb33034', 'unknown', NULL, 'unknown', NULL, 'complete', '2024-02-09 11:33:41.658+00');
INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('w2', 'b', 'active', '2026-03-13 10:00:00+00', 'deleted', '2026-03-04 10:00:00+00', 'unknown', NULL);
INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('w2', 'a', 'unknown', NULL, 'unknown', NULL, 'error', '2026-03-22 10:00:00+00');
INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('w1', 'a', 'unknown', NULL, 'unknown', NULL, 'error', '2026-03-27 10:00:00+00');
INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('w1', 'b', 'active', '2026-03-03 10:00:00+00', 'deleted', '2026-03-01 10:00:00+00', 'unknown', NULL);
INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('w1', 'c', 'unknown', NULL, 'unknown', NULL, 'paused', '2026-03-02 10:00:00+00');
INSERT INTO public.accounts (workspace_id, integration_account_id, account_state, account_since, link_state, link_since, sync_state, sync_since) VALUES ('w2', 'c', 'unknown', NULL, 'unknown', NULL, 'paused', '2026-03-10 10:00:00+00');


--
-- Data for Name: event_states; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.event_states (event_type, category, state) VALUES ('account.created', 'account', 'active');
INSERT INTO public.event_states (event_type, category, state) VALUES ('account.updated', 'account', 'active');
INSERT INTO public.event_states (event_type, category, state) VALUES ('account.deleted', 'account', 'deleted');
INSERT INTO public.event_states (event_type, category, state) VALUES ('link.created', 'link', 'active');
INSERT INTO public.event_states (event_type, category, state) VALUES ('link.updated', 'link', 'active');
INSERT INTO public.event_states (event_type, category, state) VALUES ('link.deleted', 'link', 'deleted');
INSERT INTO public.event_states (event_type, category, state) VALUES ('sync.complete', 'sync', 'complete');
INSERT INTO public.event_states (event_type, category, state) VALUES ('sync.error', 'sync', 'error');
INSERT INTO public.event_states (event_type, category, state) VALUES ('sync.paused', 'sync', 'paused');


--
-- Data for Name: events; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('c1348091-bd3e-4598-9e7f-5ea457f02e85', '6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66', '4a905074-4dd9-426a-b5a9-cf7c9bb33034', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2024-02-09 11:33:41.658+00', '2026-12-04 03:26:37.678578+00', '2026-12-04 03:26:37.678578+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66", "integrationAccountId": "4a905074-4dd9-426a-b5a9-cf7c9bb33034"}, "hook": {"id": "c1348091-bd3e-4598-9e7f-5ea457f02e85", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2024-02-09T11:33:41.658Z"}}', 738, 1);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-00', 'w2', 'a', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-01 10:00:00+00', '2026-12-04 03:26:37.69283+00', '2026-12-04 03:26:37.69283+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "a"}, "hook": {"id": "old-00", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2026-03-01T10:00:00Z"}}', 739, 2);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-01', 'w1', 'a', 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-02 10:00:00+00', '2026-12-04 03:26:37.697378+00', '2026-12-04 03:26:37.697378+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-01", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-02T10:00:00Z"}}', 742, 3);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-02', 'w1', 'b', 'account.created', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-03 10:00:00+00', '2026-12-04 03:26:37.708662+00', '2026-12-04 03:26:37.708662+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-02", "source": "CALRY_WEBHOOK", "eventType": "account.created", "timeStamp": "2026-03-03T10:00:00Z"}}', 744, 4);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-05', 'w1', 'a', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-06 10:00:00+00', '2026-12-04 03:26:37.718633+00', '2026-12-04 03:26:37.718633+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-05", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2026-03-06T10:00:00Z"}}', 748, 6);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-06', 'w2', 'a', 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-07 10:00:00+00', '2026-12-04 03:26:37.722615+00', '2026-12-04 03:26:37.722615+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "a"}, "hook": {"id": "old-06", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-07T10:00:00Z"}}', 750, 7);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-07', 'w1', 'b', 'account.created', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-08 10:00:00+00', '2026-12-04 03:26:37.726171+00', '2026-12-04 03:26:37.726171+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-07", "source": "CALRY_WEBHOOK", "eventType": "account.created", "timeStamp": "2026-03-08T10:00:00Z"}}', 752, 8);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-08', 'w1', 'b', 'link.deleted', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-09 10:00:00+00', '2026-12-04 03:26:37.729276+00', '2026-12-04 03:26:37.729276+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-08", "source": "CALRY_WEBHOOK", "eventType": "link.deleted", "timeStamp": "2026-03-09T10:00:00Z"}}', 754, 9);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-10', 'w1', 'a', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-11 10:00:00+00', '2026-12-04 03:26:37.732927+00', '2026-12-04 03:26:37.732927+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-10", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2026-03-11T10:00:00Z"}}', 756, 10);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-11', 'w1', 'a', 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-12 10:00:00+00', '2026-12-04 03:26:37.736423+00', '2026-12-04 03:26:37.736423+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-11", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-12T10:00:00Z"}}', 758, 11);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-12', 'w2', 'b', 'account.created', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-13 10:00:00+00', '2026-12-04 03:26:37.739817+00', '2026-12-04 03:26:37.739817+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "b"}, "hook": {"id": "old-12", "source": "CALRY_WEBHOOK", "eventType": "account.created", "timeStamp": "2026-03-13T10:00:00Z"}}', 760, 12);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-13', 'w1', 'b', 'link.deleted', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-14 10:00:00+00', '2026-12-04 03:26:37.743288+00', '2026-12-04 03:26:37.743288+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-13", "source": "CALRY_WEBHOOK", "eventType": "link.deleted", "timeStamp": "2026-03-14T10:00:00Z"}}', 762, 13);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-15', 'w2', 'a', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-16 10:00:00+00', '2026-12-04 03:26:37.746636+00', '2026-12-04 03:26:37.746636+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "a"}, "hook": {"id": "old-15", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2026-03-16T10:00:00Z"}}', 764, 14);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-16', 'w1', 'a', 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-17 10:00:00+00', '2026-12-04 03:26:37.750089+00', '2026-12-04 03:26:37.750089+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-16", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-17T10:00:00Z"}}', 766, 15);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-17', 'w1', 'b', 'account.created', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-18 10:00:00+00', '2026-12-04 03:26:37.753747+00', '2026-12-04 03:26:37.753747+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-17", "source": "CALRY_WEBHOOK", "eventType": "account.created", "timeStamp": "2026-03-18T10:00:00Z"}}', 768, 16);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-18', 'w2', 'b', 'link.deleted', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-19 10:00:00+00', '2026-12-04 03:26:37.756961+00', '2026-12-04 03:26:37.756961+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "b"}, "hook": {"id": "old-18", "source": "CALRY_WEBHOOK", "eventType": "link.deleted", "timeStamp": "2026-03-19T10:00:00Z"}}', 770, 17);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-20', 'w1', 'a', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-21 10:00:00+00', '2026-12-04 03:26:37.760292+00', '2026-12-04 03:26:37.760292+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-20", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2026-03-21T10:00:00Z"}}', 772, 18);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-21', 'w2', 'a', 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-22 10:00:00+00', '2026-12-04 03:26:37.763269+00', '2026-12-04 03:26:37.763269+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "a"}, "hook": {"id": "old-21", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-22T10:00:00Z"}}', 774, 19);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-22', 'w1', 'b', 'account.created', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-23 10:00:00+00', '2026-12-04 03:26:37.76639+00', '2026-12-04 03:26:37.76639+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-22", "source": "CALRY_WEBHOOK", "eventType": "account.created", "timeStamp": "2026-03-23T10:00:00Z"}}', 776, 20);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-23', 'w1', 'b', 'link.deleted', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-24 10:00:00+00', '2026-12-04 03:26:37.769725+00', '2026-12-04 03:26:37.769725+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-23", "source": "CALRY_WEBHOOK", "eventType": "link.deleted", "timeStamp": "2026-03-24T10:00:00Z"}}', 778, 21);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-25', 'w1', 'a', 'sync.complete', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-26 10:00:00+00', '2026-12-04 03:26:37.773241+00', '2026-12-04 03:26:37.773241+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-25", "source": "CALRY_WEBHOOK", "eventType": "sync.complete", "timeStamp": "2026-03-26T10:00:00Z"}}', 780, 22);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-26', 'w1', 'a', 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-27 10:00:00+00', '2026-12-04 03:26:37.776806+00', '2026-12-04 03:26:37.776806+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "old-26", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-27T10:00:00Z"}}', 782, 23);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-27', 'w2', 'b', 'account.created', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-28 10:00:00+00', '2026-12-04 03:26:37.780459+00', '2026-12-04 03:26:37.780459+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "b"}, "hook": {"id": "old-27", "source": "CALRY_WEBHOOK", "eventType": "account.created", "timeStamp": "2026-03-28T10:00:00Z"}}', 784, 24);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-28', 'w1', 'b', 'link.deleted', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-01 10:00:00+00', '2026-12-04 03:26:37.783861+00', '2026-12-04 03:26:37.783861+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "b"}, "hook": {"id": "old-28", "source": "CALRY_WEBHOOK", "eventType": "link.deleted", "timeStamp": "2026-03-01T10:00:00Z"}}', 786, 25);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-29', 'w1', 'c', 'sync.paused', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-02 10:00:00+00', '2026-12-04 03:26:37.788234+00', '2026-12-04 03:26:37.788234+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "c"}, "hook": {"id": "old-29", "source": "CALRY_WEBHOOK", "eventType": "sync.paused", "timeStamp": "2026-03-02T10:00:00Z"}}', 788, 26);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-24', 'w2', 'c', 'sync.paused', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-25 10:00:00+00', '2026-12-04 03:26:37.792559+00', '2026-12-04 03:26:37.792559+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "c"}, "hook": {"id": "old-24", "source": "CALRY_WEBHOOK", "eventType": "sync.paused", "timeStamp": "2026-03-25T10:00:00Z"}}', 790, 27);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-19', 'w1', 'c', 'sync.paused', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-20 10:00:00+00', '2026-12-04 03:26:37.796663+00', '2026-12-04 03:26:37.796663+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "c"}, "hook": {"id": "old-19", "source": "CALRY_WEBHOOK", "eventType": "sync.paused", "timeStamp": "2026-03-20T10:00:00Z"}}', 792, 28);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-14', 'w1', 'c', 'sync.paused', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-15 10:00:00+00', '2026-12-04 03:26:37.800197+00', '2026-12-04 03:26:37.800197+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "c"}, "hook": {"id": "old-14", "source": "CALRY_WEBHOOK", "eventType": "sync.paused", "timeStamp": "2026-03-15T10:00:00Z"}}', 794, 29);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-09', 'w2', 'c', 'sync.paused', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-10 10:00:00+00', '2026-12-04 03:26:37.803674+00', '2026-12-04 03:26:37.803674+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "c"}, "hook": {"id": "old-09", "source": "CALRY_WEBHOOK", "eventType": "sync.paused", "timeStamp": "2026-03-10T10:00:00Z"}}', 796, 30);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-04', 'w1', 'c', 'sync.paused', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-05 10:00:00+00', '2026-12-04 03:26:37.80774+00', '2026-12-04 03:26:37.80774+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "c"}, "hook": {"id": "old-04", "source": "CALRY_WEBHOOK", "eventType": "sync.paused", "timeStamp": "2026-03-05T10:00:00Z"}}', 798, 31);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('no-account', 'w1', NULL, 'sync.error', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-31 10:00:00+00', '2026-12-04 03:26:37.811954+00', '2026-12-04 03:26:37.811954+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1"}, "hook": {"id": "no-account", "source": "CALRY_WEBHOOK", "eventType": "sync.error", "timeStamp": "2026-03-31T10:00:00Z"}}', 800, 32);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('unknown-type', 'w1', 'a', 'calendar.synced', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-31 11:00:00+00', '2026-12-04 03:26:37.81528+00', '2026-12-04 03:26:37.81528+00', 1, false, '{"data": {"result": "SUCCESS", "workspaceId": "w1", "integrationAccountId": "a"}, "hook": {"id": "unknown-type", "source": "CALRY_WEBHOOK", "eventType": "calendar.synced", "timeStamp": "2026-03-31T11:00:00Z"}}', 802, 33);
INSERT INTO public.events (hook_id, workspace_id, integration_account_id, event_type, source, result, occurred_at, received_at, last_received_at, delivery_count, signature_verified, payload, feed_xid, feed_seq) VALUES ('old-03', 'w2', 'b', 'link.deleted', 'CALRY_WEBHOOK', 'SUCCESS', '2026-03-04 10:00:00+00', '2026-12-04 03:26:37.714673+00', '2026-12-04 03:26:37.817939+00', 2, false, '{"data": {"result": "SUCCESS", "workspaceId": "w2", "integrationAccountId": "b"}, "hook": {"id": "old-03", "source": "CALRY_WEBHOOK", "eventType": "link.deleted", "timeStamp": "2026-03-04T10:00:00Z"}}', 746, 5);


--
-- Data for Name: latest_events; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66', '4a905074-4dd9-426a-b5a9-cf7c9bb33034', 'sync.complete', 'c1348091-bd3e-4598-9e7f-5ea457f02e85', 'SUCCESS', '2024-02-09 11:33:41.658+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w2', 'a', 'sync.complete', 'old-15', 'SUCCESS', '2026-03-16 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w2', 'b', 'link.deleted', 'old-18', 'SUCCESS', '2026-03-19 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w2', 'a', 'sync.error', 'old-21', 'SUCCESS', '2026-03-22 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w1', 'b', 'account.created', 'old-22', 'SUCCESS', '2026-03-23 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w1', 'b', 'link.deleted', 'old-23', 'SUCCESS', '2026-03-24 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w1', 'a', 'sync.complete', 'old-25', 'SUCCESS', '2026-03-26 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w1', 'a', 'sync.error', 'old-26', 'SUCCESS', '2026-03-27 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w2', 'b', 'account.created', 'old-27', 'SUCCESS', '2026-03-28 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w2', 'c', 'sync.paused', 'old-24', 'SUCCESS', '2026-03-25 10:00:00+00');
INSERT INTO public.latest_events (workspace_id, integration_account_id, event_type, hook_id, result, occurred_at) VALUES ('w1', 'c', 'sync.paused', 'old-19', 'SUCCESS', '2026-03-20 10:00:00+00');


--
-- Data for Name: state_changes; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66', '4a905074-4dd9-426a-b5a9-cf7c9bb33034', 'sync', '2024-02-09 11:33:41.658+00', 'c1348091-bd3e-4598-9e7f-5ea457f02e85', 'unknown', 'complete');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'a', 'sync', '2026-03-01 10:00:00+00', 'old-00', 'unknown', 'complete');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'a', 'sync', '2026-03-02 10:00:00+00', 'old-01', 'unknown', 'error');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'b', 'account', '2026-03-03 10:00:00+00', 'old-02', 'unknown', 'active');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'b', 'link', '2026-03-04 10:00:00+00', 'old-03', 'unknown', 'deleted');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'a', 'sync', '2026-03-06 10:00:00+00', 'old-05', 'error', 'complete');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'a', 'sync', '2026-03-07 10:00:00+00', 'old-06', 'complete', 'error');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'a', 'sync', '2026-03-12 10:00:00+00', 'old-11', 'complete', 'error');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'b', 'account', '2026-03-13 10:00:00+00', 'old-12', 'unknown', 'active');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'a', 'sync', '2026-03-16 10:00:00+00', 'old-15', 'error', 'complete');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'a', 'sync', '2026-03-21 10:00:00+00', 'old-20', 'error', 'complete');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'a', 'sync', '2026-03-22 10:00:00+00', 'old-21', 'complete', 'error');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'a', 'sync', '2026-03-27 10:00:00+00', 'old-26', 'complete', 'error');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'b', 'link', '2026-03-01 10:00:00+00', 'old-28', 'unknown', 'deleted');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w1', 'c', 'sync', '2026-03-02 10:00:00+00', 'old-29', 'unknown', 'paused');
INSERT INTO public.state_changes (workspace_id, integration_account_id, category, occurred_at, hook_id, from_state, to_state) VALUES ('w2', 'c', 'sync', '2026-03-10 10:00:00+00', 'old-09', 'unknown', 'paused');


--
-- Data for Name: tokens; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.tokens (id, name, token_hash, all_workspaces, workspaces, created_at, revoked_at) OVERRIDING SYSTEM VALUE VALUES (1, 'all', '\x27e4e4a48fde11e2a0443e591b55c046d9f2578e6f15b1e0fa93dd192caefd7a', true, '{}', '2026-12-04 03:26:37.028197+00', NULL);
INSERT INTO public.tokens (id, name, token_hash, all_workspaces, workspaces, created_at, revoked_at) OVERRIDING SYSTEM VALUE VALUES (2, 'w1', '\x78ab861dbd5b0bfddcc4bb5b6654c5c050a1abe1380959bae4afa5f7b363e901', false, '{w1}', '2026-12-04 03:26:37.233644+00', NULL);
INSERT INTO public.tokens (id, name, token_hash, all_workspaces, workspaces, created_at, revoked_at) OVERRIDING SYSTEM VALUE VALUES (3, 'revoked', '\xfdf14bc2a3e363b3b6489289795f5040b952d8674d4bbf8e37736633c6dfcd77', true, '{}', '2026-12-04 03:26:37.365683+00', '2026-12-04 03:26:37.515841+00');


--
-- Data for Name: workspaces; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.workspaces (workspace_id, last_event_at) VALUES ('6fd2160c-3ea6-42c2-bcdd-2eef89f5ca66', '2024-02-09 11:33:41.658+00');
INSERT INTO public.workspaces (workspace_id, last_event_at) VALUES ('w2', '2026-03-28 10:00:00+00');
INSERT INTO public.workspaces (workspace_id, last_event_at) VALUES ('w1', '2026-03-31 11:00:00+00');


--
-- Name: events_feed_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.events_feed_seq', 33, true);


--
-- Name: tokens_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.tokens_id_seq', 3, true);


--
-- Name: _sqlx_migrations _sqlx_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public._sqlx_migrations
    ADD CONSTRAINT _sqlx_migrations_pkey PRIMARY KEY (version);


--
-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (workspace_id, integration_account_id);


--
-- Name: event_states event_states_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.event_states
    ADD CONSTRAINT event_states_pkey PRIMARY KEY (event_type);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (hook_id);


--
-- Name: latest_events latest_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.latest_events
    ADD CONSTRAINT latest_events_pkey PRIMARY KEY (workspace_id, integration_account_id, event_type);


--
-- Name: state_changes state_changes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.state_changes
    ADD CONSTRAINT state_changes_pkey PRIMARY KEY (workspace_id, integration_account_id, category, occurred_at, hook_id);


--
-- Name: tokens tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tokens
    ADD CONSTRAINT tokens_pkey PRIMARY KEY (id);


--
-- Name: tokens tokens_token_hash_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.tokens
    ADD CONSTRAINT tokens_token_hash_key UNIQUE (token_hash);


--
-- Name: workspaces workspaces_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_pkey PRIMARY KEY (workspace_id);


--
-- Name: accounts_by_sync; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX accounts_by_sync ON public.accounts USING btree (sync_state, sync_since DESC, workspace_id, integration_account_id);


--
-- Name: events_account_history; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_account_history ON public.events USING btree (workspace_id, integration_account_id, occurred_at, hook_id) WHERE (integration_account_id IS NOT NULL);


--
-- Name: events_feed; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_feed ON public.events USING btree (feed_xid, feed_seq);


--
-- Name: events_workspace_feed; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_workspace_feed ON public.events USING btree (workspace_id, feed_xid, feed_seq);


--
-- Name: events_workspace_history; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_workspace_history ON public.events USING btree (workspace_id, occurred_at, hook_id);


--
-- Name: tokens_live; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX tokens_live ON public.tokens USING btree (id) WHERE (revoked_at IS NULL);


--
-- PostgreSQL database dump complete
--


