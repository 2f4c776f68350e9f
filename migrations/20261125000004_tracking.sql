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
-- The latest identification wins. A lead's timeline is its own events plus those of every
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
  primary key (tenant_id, id)
);
select flywheel_enable_tenant_rls('event_dead_letters');
select flywheel_timestamps('event_dead_letters');
create index event_dead_letters_tenant_created_idx on event_dead_letters (tenant_id, created_at);

-- Listing a tenant's events of one type by time (by time alone: events_tenant_occurred_idx).
create index events_tenant_type_occurred_idx on events (tenant_id, event_type, occurred_at);
