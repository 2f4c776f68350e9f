-- Tracking and event ingestion: each tenant's public write key and tracking settings, the links
-- that stitch an anonymous visitor to a lead, and events that could not be stored (dead letters).
-- Events themselves live in the partitioned `events` table of the foundation.

-- One row per tenant. The write key is public (it is embedded in web pages), so it is stored in
-- the clear; it can only add events of browser-observable types (see gateway/src/resources/collect.rs).
create table tracking_settings (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  write_key text not null check (write_key ~ '^fwp_[0-9a-f]{32}$'),
  -- Origins (scheme://host[:port]) whose pages may send events; empty = any origin.
  allowed_origins text[] not null default '{}' check (cardinality(allowed_origins) <= 100),
  -- Cookieless mode: the visitor id is a salted hash of (day, tenant, IP, user agent), computed
  -- by the edge; the browser script sets no cookie.
  cookieless boolean not null default false,
  -- Events per second this tenant may send; null = the node's default.
  events_per_second integer check (events_per_second between 1 and 1000000),
  key_rotated_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint tracking_settings_tenant_id_key unique (tenant_id),
  -- Global: a write key names its tenant (like an API key's hash).
  constraint tracking_settings_write_key_key unique (write_key)
);
select flywheel_enable_tenant_rls('tracking_settings');
select flywheel_timestamps('tracking_settings');

-- Existing tenants get their settings now; new ones when they are created (storage/src/tenants.rs).
do $$
declare
  v_id uuid;
begin
  for v_id in select id from tenants loop
    perform set_config('app.tenant_id', v_id::text, true);
    insert into tracking_settings (tenant_id, write_key)
         values (v_id, 'fwp_' || replace(gen_random_uuid()::text, '-', ''))
    on conflict (tenant_id) do nothing;
  end loop;
  perform set_config('app.tenant_id', '', true);
end $$;

-- Resolves a write key to its tenant before any tenant is known (the collect endpoint).
create policy auth_tracking on tracking_settings for select to flywheel_auth using (true);
grant select on tracking_settings to flywheel_auth;

create function auth_tracking_by_key(p_write_key text)
returns table (tenant_id uuid, tenant_status text, allowed_origins text[], cookieless boolean,
               events_per_second integer)
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select s.tenant_id, t.status, s.allowed_origins, s.cookieless, s.events_per_second
    from tracking_settings s
    join tenants t on t.id = s.tenant_id
   where s.write_key = p_write_key
$$;
alter function auth_tracking_by_key(text) owner to flywheel_auth;
revoke execute on function auth_tracking_by_key(text) from public;
grant execute on function auth_tracking_by_key(text) to flywheel_app;

-- Identity stitching: a visitor (browser) identified as a lead by a form, a login or a purchase.
-- The latest identification wins. Cookieless visitors (`c.…`, a daily hash shared by everyone
-- behind one address with the same browser) are never linked. A lead's timeline is its own events plus those of every
-- visitor linked to it, before and after the link.
create table visitor_links (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  visitor_id text not null check (visitor_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
  lead_id uuid not null,
  linked_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint visitor_links_tenant_id_visitor_id_key unique (tenant_id, visitor_id),
  foreign key (tenant_id, lead_id) references leads (tenant_id, id) on delete cascade
);
select flywheel_enable_tenant_rls('visitor_links');
select flywheel_timestamps('visitor_links');
create index visitor_links_tenant_lead_idx on visitor_links (tenant_id, lead_id);

-- Events the ingestor gave up on after repeated failures, with the reason. The event stays
-- readable here (and in the dead-letter stream) so that it can be fixed and replayed.
create table event_dead_letters (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  event_id uuid not null,
  stream_entry text not null,
  attempts integer not null check (attempts >= 1),
  reason text not null check (length(reason) between 1 and 2000),
  event jsonb not null check (jsonb_typeof(event) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  -- A stream entry is dead-lettered once, even if the ingestor dies between table and stream.
  constraint event_dead_letters_tenant_id_stream_entry_key unique (tenant_id, stream_entry)
);
select flywheel_enable_tenant_rls('event_dead_letters');
select flywheel_timestamps('event_dead_letters');
create index event_dead_letters_tenant_created_idx on event_dead_letters (tenant_id, created_at);

-- Listing a tenant's events of one type by time (by time alone: events_tenant_occurred_idx).
create index events_tenant_type_occurred_idx on events (tenant_id, event_type, occurred_at);

-- Partition maintenance, revised: besides this month and the next `p_months_ahead`, every month
-- the default partition holds rows for gets its partition (events up to 31 days old, and
-- imports of past years, land there first), and rows move with one DELETE … RETURNING, so a
-- row committed meanwhile is either moved or stays: never dropped.
create or replace function flywheel_ensure_partitions(p_months_ahead integer default 3)
returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_parent text;
  v_months date[];
  v_month date;
  v_lo timestamptz;
  v_hi timestamptz;
  v_name text;
  v_created integer := 0;
begin
  if p_months_ahead < 0 or p_months_ahead > 36 then
    raise exception 'months ahead must be between 0 and 36, got %', p_months_ahead
      using errcode = '22023';
  end if;
  -- One maintainer at a time; concurrent callers wait, then find the work done.
  perform pg_advisory_xact_lock(7365420002);
  foreach v_parent in array array['events', 'affiliate_events'] loop
    execute format(
      'select coalesce(array_agg(distinct date_trunc(''month'', occurred_at at time zone ''utc'')::date), ''{}'') from %I',
      v_parent || '_default') into v_months;
    for i in 0 .. p_months_ahead loop
      v_months := v_months || (date_trunc('month', now() at time zone 'utc') + make_interval(months => i))::date;
    end loop;
    foreach v_month in array v_months loop
      -- Month boundaries in UTC, whatever the session's time zone.
      v_lo := v_month::timestamp at time zone 'utc';
      v_hi := (v_month + interval '1 month')::timestamp at time zone 'utc';
      v_name := format('%s_p%s', v_parent, to_char(v_month, 'YYYY_MM'));
      continue when to_regclass('public.' || v_name) is not null;
      execute format('create temp table flywheel_moved (like %I) on commit drop', v_parent);
      execute format(
        'with m as (delete from %I where occurred_at >= %L and occurred_at < %L returning *) '
        'insert into flywheel_moved select * from m',
        v_parent || '_default', v_lo, v_hi);
      execute format('create table public.%I partition of public.%I for values from (%L) to (%L)',
                     v_name, v_parent, v_lo, v_hi);
      -- The rows go in before row-level security is switched on, inside this transaction, so
      -- nobody can observe the partition without its policy.
      execute format('insert into %I select * from flywheel_moved', v_name);
      drop table flywheel_moved;
      perform flywheel_enable_tenant_rls(('public.' || v_name)::regclass);
      execute format('grant select, insert, update, delete on %I to flywheel_app', v_name);
      v_created := v_created + 1;
    end loop;
  end loop;
  return v_created;
end $$;
