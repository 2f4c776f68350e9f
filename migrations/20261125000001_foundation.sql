-- Flywheel foundation: the seed's 15 tables, the platform tables (api_keys, agent_runs,
-- run_steps, approvals, audit_log, outbox, memory_items), forced row-level security on every
-- tenant table, the narrow pre-tenant paths and monthly partitions for events.
-- Runs as flywheel_owner (see storage/sql/bootstrap.psql). Never edit once landed: add a
-- new migration instead.

-- ---------------------------------------------------------------------------------------------
-- Shared functions
-- ---------------------------------------------------------------------------------------------

-- One trigger function keeps created_at immutable and updated_at current on every table.
create function set_timestamps() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' then
    new.created_at = old.created_at;
  end if;
  new.updated_at = now();
  return new;
end $$;

-- Enables and forces row-level security on a tenant table (or partition) with the one tenant
-- policy: a row is visible and writable only while app.tenant_id names its tenant. With no
-- tenant set, nullif(...) is null and nothing matches.
create function flywheel_enable_tenant_rls(tbl regclass) returns void language plpgsql as $$
begin
  execute format('alter table %s enable row level security', tbl);
  execute format('alter table %s force row level security', tbl);
  execute format(
    'create policy tenant_isolation on %s '
    'using (tenant_id = (select nullif(current_setting(''app.tenant_id'', true), '''')::uuid)) '
    'with check (tenant_id = (select nullif(current_setting(''app.tenant_id'', true), '''')::uuid))',
    tbl);
end $$;
revoke execute on function flywheel_enable_tenant_rls(regclass) from public;

create function flywheel_timestamps(tbl regclass) returns void language plpgsql as $$
begin
  execute format(
    'create trigger set_timestamps before insert or update on %s '
    'for each row execute function set_timestamps()', tbl);
end $$;
revoke execute on function flywheel_timestamps(regclass) from public;

-- ---------------------------------------------------------------------------------------------
-- Tenants and access
-- ---------------------------------------------------------------------------------------------

create table tenants (
  id uuid primary key default gen_random_uuid(),
  name text not null check (length(name) between 1 and 200),
  slug text not null check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
  status text not null default 'active' check (status in ('active', 'suspended', 'deleted')),
  settings jsonb not null default '{}' check (jsonb_typeof(settings) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint tenants_slug_key unique (slug)
);
select flywheel_timestamps('tenants');
alter table tenants enable row level security;
alter table tenants force row level security;
-- A tenant sees and updates only its own row; tenants are created only by auth_create_tenant.
create policy tenant_self on tenants
  using (id = (select nullif(current_setting('app.tenant_id', true), '')::uuid))
  with check (id = (select nullif(current_setting('app.tenant_id', true), '')::uuid));

create table users (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  email text not null check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+$'),
  name text check (length(name) <= 200),
  role text not null check (role in ('owner', 'marketer', 'approver', 'viewer')),
  status text not null default 'active' check (status in ('invited', 'active', 'disabled')),
  password_hash text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint users_tenant_id_email_key unique (tenant_id, email)
);

create table api_keys (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(name) between 1 and 200),
  -- The first characters of the key, shown to humans to tell keys apart. Never enough to use.
  prefix text not null,
  -- SHA-256 of the whole key. Keys are 256-bit random tokens, so a fast hash is enough (see
  -- ARCHITECTURE.md); the plain key is shown once, at creation, and never stored.
  key_hash bytea not null check (length(key_hash) = 32),
  role text not null check (role in ('owner', 'marketer', 'approver', 'viewer')),
  user_id uuid,
  expires_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint api_keys_key_hash_key unique (key_hash),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete set null (user_id)
);

-- ---------------------------------------------------------------------------------------------
-- Brand, content, campaigns, pages
-- ---------------------------------------------------------------------------------------------

create table brand_core (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null default 'primary' check (length(name) between 1 and 200),
  positioning text not null check (length(positioning) <= 20000),
  tone text not null check (length(tone) <= 20000),
  guidelines jsonb not null default '{}' check (jsonb_typeof(guidelines) = 'object'),
  status text not null default 'draft' check (status in ('draft', 'approved', 'archived')),
  version integer not null default 1 check (version >= 1),
  embedding_ref text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint brand_core_tenant_id_name_key unique (tenant_id, name)
);

create table personas (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(name) between 1 and 200),
  description text not null default '' check (length(description) <= 20000),
  attributes jsonb not null default '{}' check (jsonb_typeof(attributes) = 'object'),
  embedding_ref text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint personas_tenant_id_name_key unique (tenant_id, name)
);

create table campaigns (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(name) between 1 and 200),
  objective text check (length(objective) <= 2000),
  strategy jsonb not null default '{}' check (jsonb_typeof(strategy) = 'object'),
  budget numeric(20, 4) check (budget >= 0),
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
  start_date date,
  end_date date,
  channels text[] not null default '{}',
  status text not null default 'draft'
    check (status in ('draft', 'awaiting_approval', 'active', 'paused', 'completed', 'archived')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint campaigns_budget_currency_check check ((budget is null) = (currency is null)),
  constraint campaigns_dates_check check (end_date is null or start_date is null or end_date >= start_date)
);

create table content_assets (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  type text not null check (type in ('blog', 'reel_script', 'carousel', 'ad', 'email', 'social_post',
                                     'landing_copy', 'image', 'video')),
  title text not null check (length(title) between 1 and 500),
  status text not null default 'draft'
    check (status in ('draft', 'in_review', 'approved', 'published', 'archived')),
  data jsonb not null default '{}' check (jsonb_typeof(data) = 'object'),
  storage_url text,
  tags text[] not null default '{}',
  embedding_ref text,
  campaign_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id)
);

create table landing_pages (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(name) between 1 and 200),
  url_path text not null check (url_path ~ '^/[A-Za-z0-9/_.~-]*$' and length(url_path) <= 500),
  page_schema jsonb not null default '{}' check (jsonb_typeof(page_schema) = 'object'),
  variant text not null default 'a' check (variant ~ '^[a-z0-9_-]{1,32}$'),
  status text not null default 'draft' check (status in ('draft', 'published', 'archived')),
  campaign_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint landing_pages_tenant_id_url_path_variant_key unique (tenant_id, url_path, variant),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id)
);

-- ---------------------------------------------------------------------------------------------
-- Affiliates, leads, emails
-- ---------------------------------------------------------------------------------------------

create table affiliates (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  user_id uuid,
  name text not null check (length(name) between 1 and 200),
  email text check (email = lower(email)),
  referral_code text not null check (referral_code ~ '^[A-Za-z0-9_-]{3,64}$'),
  commission_rate numeric(6, 5) not null check (commission_rate >= 0 and commission_rate <= 1),
  status text not null default 'pending' check (status in ('pending', 'active', 'suspended', 'terminated')),
  payout_info jsonb not null default '{}' check (jsonb_typeof(payout_info) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint affiliates_tenant_id_referral_code_key unique (tenant_id, referral_code),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete set null (user_id)
);

create table leads (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  email text check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+$'),
  phone text check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  name text check (length(name) <= 200),
  source text check (length(source) <= 200),
  status text not null default 'new'
    check (status in ('new', 'contacted', 'qualified', 'customer', 'lost', 'unsubscribed')),
  attributes jsonb not null default '{}' check (jsonb_typeof(attributes) = 'object'),
  landing_page_id uuid,
  campaign_id uuid,
  affiliate_id uuid,
  user_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint leads_tenant_id_email_key unique (tenant_id, email),
  constraint leads_contact_check check (email is not null or phone is not null),
  foreign key (tenant_id, landing_page_id) references landing_pages (tenant_id, id) on delete set null (landing_page_id),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id),
  foreign key (tenant_id, affiliate_id) references affiliates (tenant_id, id) on delete set null (affiliate_id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete set null (user_id)
);

create table emails (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  type text not null check (type in ('campaign', 'sequence', 'transactional', 'reminder')),
  -- Templates arrive with the Email agent's issue; until then the id is opaque.
  template_id uuid,
  subject text check (length(subject) <= 998),
  body text not null default '',
  channel text not null default 'email' check (channel in ('email', 'whatsapp')),
  schedule_at timestamptz,
  sent_at timestamptz,
  status text not null default 'draft'
    check (status in ('draft', 'scheduled', 'sending', 'sent', 'failed', 'cancelled')),
  campaign_id uuid,
  lead_id uuid,
  metrics jsonb not null default '{}' check (jsonb_typeof(metrics) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id),
  foreign key (tenant_id, lead_id) references leads (tenant_id, id) on delete set null (lead_id)
);

-- ---------------------------------------------------------------------------------------------
-- Events (partitioned by month)
-- ---------------------------------------------------------------------------------------------

create table events (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null,
  event_type text not null check (event_type in (
    'page_view', 'click', 'form_submit', 'lead_created', 'meeting_booked', 'email_sent', 'email_open',
    'email_click', 'whatsapp_sent', 'purchase', 'refund', 'feedback', 'affiliate_click',
    'ad_impression', 'ad_click')),
  source text not null default 'web' check (length(source) <= 64),
  occurred_at timestamptz not null,
  received_at timestamptz not null default now(),
  session_id text check (length(session_id) <= 128),
  visitor_id text check (length(visitor_id) <= 128),
  lead_id uuid,
  campaign_id uuid,
  landing_page_id uuid,
  email_id uuid,
  ad_id text check (length(ad_id) <= 256),
  meta jsonb not null default '{}' check (jsonb_typeof(meta) = 'object'),
  -- The partition key must be part of every unique key of a partitioned table.
  primary key (tenant_id, id, occurred_at),
  foreign key (tenant_id, lead_id) references leads (tenant_id, id) on delete set null (lead_id),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id),
  foreign key (tenant_id, landing_page_id) references landing_pages (tenant_id, id) on delete set null (landing_page_id),
  foreign key (tenant_id, email_id) references emails (tenant_id, id) on delete set null (email_id)
) partition by range (occurred_at);
create table events_default partition of events default;

create table affiliate_events (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  affiliate_id uuid not null,
  occurred_at timestamptz not null,
  event_type text not null
    check (event_type in ('click', 'signup', 'lead', 'sale', 'refund', 'payout', 'adjustment')),
  lead_id uuid,
  campaign_id uuid,
  amount numeric(20, 4),
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
  meta jsonb not null default '{}' check (jsonb_typeof(meta) = 'object'),
  primary key (tenant_id, id, occurred_at),
  constraint affiliate_events_amount_currency_check check ((amount is null) = (currency is null)),
  foreign key (tenant_id, affiliate_id) references affiliates (tenant_id, id) on delete cascade,
  foreign key (tenant_id, lead_id) references leads (tenant_id, id) on delete set null (lead_id),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id)
) partition by range (occurred_at);
create table affiliate_events_default partition of affiliate_events default;

-- ---------------------------------------------------------------------------------------------
-- Performance and analytics
-- ---------------------------------------------------------------------------------------------

create table ad_performance (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  date date not null,
  network text not null check (length(network) between 1 and 64),
  campaign_id uuid,
  ad_group_id text,
  ad_id text,
  impressions bigint not null default 0 check (impressions >= 0),
  clicks bigint not null default 0 check (clicks >= 0),
  cost numeric(20, 4) not null default 0 check (cost >= 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  conversions numeric(20, 4) not null default 0 check (conversions >= 0),
  revenue numeric(20, 4) not null default 0 check (revenue >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint ad_performance_row_key unique nulls not distinct (tenant_id, date, network, campaign_id, ad_group_id, ad_id),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id)
);

create table influencer_campaigns (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  -- Influencer profiles arrive with the Influencer agent's issue; until then the id is opaque.
  influencer_id uuid not null,
  name text not null check (length(name) between 1 and 200),
  campaign_id uuid,
  contract jsonb not null default '{}' check (jsonb_typeof(contract) = 'object'),
  budget numeric(20, 4) check (budget >= 0),
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
  status text not null default 'prospect' check (status in ('prospect', 'negotiating', 'awaiting_approval',
                                                             'contracted', 'live', 'completed', 'cancelled')),
  start_date date,
  end_date date,
  performance jsonb not null default '{}' check (jsonb_typeof(performance) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint influencer_campaigns_budget_currency_check check ((budget is null) = (currency is null)),
  constraint influencer_campaigns_dates_check check (end_date is null or start_date is null or end_date >= start_date),
  foreign key (tenant_id, campaign_id) references campaigns (tenant_id, id) on delete set null (campaign_id)
);

create table analytics_snapshots (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  date date not null,
  dimension text not null check (length(dimension) between 1 and 64),
  dimension_id text,
  metrics jsonb not null default '{}' check (jsonb_typeof(metrics) = 'object'),
  computed_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint analytics_snapshots_key unique nulls not distinct (tenant_id, date, dimension, dimension_id)
);

-- ---------------------------------------------------------------------------------------------
-- Durable runs, approvals, audit, outbox
-- ---------------------------------------------------------------------------------------------

create table agent_runs (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  agent text not null check (agent in ('branding', 'content', 'community', 'ads', 'landing_page', 'seo',
                                       'email', 'influencer', 'affiliate', 'affiliate_assistant', 'analytics')),
  status text not null default 'queued' check (status in ('queued', 'running', 'paused', 'awaiting_approval',
                                                          'succeeded', 'failed', 'cancelled')),
  input jsonb not null default '{}',
  -- Index of the next step to run; committed with each step's output (the checkpoint).
  cursor integer not null default 0 check (cursor >= 0),
  -- Optimistic concurrency: every checkpoint bumps it.
  version bigint not null default 0,
  error text,
  requested_by text,
  started_at timestamptz,
  finished_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index agent_runs_tenant_status_idx on agent_runs (tenant_id, status, created_at);

create table run_steps (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  run_id uuid not null,
  name text not null,
  attempt integer not null default 1 check (attempt >= 1),
  idempotency_key text not null,
  status text not null default 'pending' check (status in ('pending', 'running', 'succeeded', 'failed', 'skipped')),
  output jsonb,
  error text,
  started_at timestamptz,
  finished_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint run_steps_idempotency_key unique (tenant_id, run_id, idempotency_key),
  foreign key (tenant_id, run_id) references agent_runs (tenant_id, id) on delete cascade
);

create table approvals (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  run_id uuid,
  step_name text,
  kind text not null check (kind in ('brand_positioning', 'campaign_strategy', 'ad_budget_scaling',
                                     'influencer_contract', 'affiliate_commission')),
  status text not null default 'pending'
    check (status in ('pending', 'approved', 'rejected', 'edited', 'forced', 'expired')),
  artifact jsonb not null,
  decided_artifact jsonb,
  allowed_roles text[] not null default '{owner,approver}',
  expires_at timestamptz,
  remind_at timestamptz,
  decided_by text,
  decided_at timestamptz,
  reason text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, run_id) references agent_runs (tenant_id, id) on delete cascade
);
create index approvals_tenant_status_idx on approvals (tenant_id, status, created_at);

-- Append-only: the application role may insert and read, never update or delete (see grants).
create table audit_log (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  actor text not null,
  actor_kind text not null check (actor_kind in ('user', 'api_key', 'system', 'agent', 'operator')),
  action text not null,
  target_type text not null,
  target_id text,
  before jsonb,
  after jsonb,
  created_at timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index audit_log_tenant_created_idx on audit_log (tenant_id, created_at);

create table outbox (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  kind text not null,
  idempotency_key text not null,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'in_flight', 'done', 'failed')),
  attempts integer not null default 0,
  available_at timestamptz not null default now(),
  done_at timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint outbox_idempotency_key unique (tenant_id, idempotency_key)
);
create index outbox_tenant_pending_idx on outbox (tenant_id, available_at) where status = 'pending';

-- ---------------------------------------------------------------------------------------------
-- Vector memory (pgvector backend). 384 dimensions: the local all-MiniLM-L6-v2 model.
-- ---------------------------------------------------------------------------------------------

create table memory_items (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  collection text not null check (collection ~ '^[a-z0-9_]{1,64}$'),
  external_id text not null check (length(external_id) between 1 and 256),
  content text not null,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  embedding vector(384) not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint memory_items_external_key unique (tenant_id, collection, external_id)
);
create index memory_items_embedding_idx on memory_items using hnsw (embedding vector_cosine_ops);

-- ---------------------------------------------------------------------------------------------
-- Indexes the seed asks for beyond the primary keys (tenant_id, id)
-- ---------------------------------------------------------------------------------------------

create index events_tenant_occurred_idx on events (tenant_id, occurred_at);
create index events_tenant_visitor_idx on events (tenant_id, visitor_id, occurred_at);
create index events_tenant_lead_idx on events (tenant_id, lead_id, occurred_at) where lead_id is not null;
create index affiliate_events_tenant_occurred_idx on affiliate_events (tenant_id, occurred_at);
create index affiliate_events_tenant_affiliate_idx on affiliate_events (tenant_id, affiliate_id, occurred_at);
create index ad_performance_tenant_date_idx on ad_performance (tenant_id, date);
create index analytics_snapshots_tenant_date_idx on analytics_snapshots (tenant_id, date);
create index leads_tenant_created_idx on leads (tenant_id, created_at);
create index campaigns_tenant_created_idx on campaigns (tenant_id, created_at);

create index brand_core_guidelines_gin on brand_core using gin (guidelines jsonb_path_ops);
create index campaigns_strategy_gin on campaigns using gin (strategy jsonb_path_ops);
create index content_assets_data_gin on content_assets using gin (data jsonb_path_ops);
create index content_assets_tags_gin on content_assets using gin (tags);
create index personas_attributes_gin on personas using gin (attributes jsonb_path_ops);
create index leads_attributes_gin on leads using gin (attributes jsonb_path_ops);
create index events_meta_gin on events using gin (meta jsonb_path_ops);
create index affiliate_events_meta_gin on affiliate_events using gin (meta jsonb_path_ops);
create index emails_metrics_gin on emails using gin (metrics jsonb_path_ops);
create index analytics_snapshots_metrics_gin on analytics_snapshots using gin (metrics jsonb_path_ops);

-- ---------------------------------------------------------------------------------------------
-- Row-level security and timestamps on every tenant table
-- ---------------------------------------------------------------------------------------------

select flywheel_enable_tenant_rls(t::regclass)
  from unnest(array['users', 'api_keys', 'brand_core', 'personas', 'campaigns', 'content_assets',
                    'landing_pages', 'affiliates', 'leads', 'emails', 'events', 'events_default',
                    'affiliate_events', 'affiliate_events_default', 'ad_performance',
                    'influencer_campaigns', 'analytics_snapshots', 'agent_runs', 'run_steps',
                    'approvals', 'audit_log', 'outbox', 'memory_items']) as t;

select flywheel_timestamps(t::regclass)
  from unnest(array['users', 'api_keys', 'brand_core', 'personas', 'campaigns', 'content_assets',
                    'landing_pages', 'affiliates', 'leads', 'emails', 'ad_performance',
                    'influencer_campaigns', 'agent_runs', 'run_steps', 'approvals', 'outbox',
                    'memory_items']) as t;

-- ---------------------------------------------------------------------------------------------
-- Monthly partitions. Owned by flywheel_owner and run as it (SECURITY DEFINER) so the node can
-- create partitions without DDL rights of its own. Rows already in the default partition for a
-- month being created are moved into the new partition in the same transaction. The owner's
-- only way to read a default partition is the maintenance policy below: the owner is subject to
-- forced RLS everywhere else.
-- ---------------------------------------------------------------------------------------------

create policy partition_maintenance on events_default to flywheel_owner using (true) with check (true);
create policy partition_maintenance on affiliate_events_default to flywheel_owner using (true) with check (true);

create function flywheel_ensure_partitions(p_months_ahead integer default 3)
returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_parent text;
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
    for i in 0 .. p_months_ahead loop
      v_month := (date_trunc('month', now() at time zone 'utc') + make_interval(months => i))::date;
      -- Month boundaries in UTC, whatever the session's time zone.
      v_lo := v_month::timestamp at time zone 'utc';
      v_hi := (v_month + interval '1 month')::timestamp at time zone 'utc';
      v_name := format('%s_p%s', v_parent, to_char(v_month, 'YYYY_MM'));
      continue when to_regclass('public.' || v_name) is not null;
      execute format(
        'create temp table flywheel_moved on commit drop as '
        'select * from %I where occurred_at >= %L and occurred_at < %L',
        v_parent || '_default', v_lo, v_hi);
      execute format('delete from %I where occurred_at >= %L and occurred_at < %L',
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
revoke execute on function flywheel_ensure_partitions(integer) from public;
grant execute on function flywheel_ensure_partitions(integer) to flywheel_app;

select flywheel_ensure_partitions(3);

-- ---------------------------------------------------------------------------------------------
-- The pre-tenant paths: SECURITY DEFINER functions owned by flywheel_auth (NOLOGIN, no
-- BYPASSRLS), search_path pinned, EXECUTE granted to flywheel_app alone. flywheel_auth reads
-- api_keys and tenants through policies that name it and nobody else.
-- ---------------------------------------------------------------------------------------------

create policy auth_lookup on api_keys for select to flywheel_auth using (true);
create policy auth_lookup on tenants for select to flywheel_auth using (true);
grant select on api_keys, tenants to flywheel_auth;
grant insert on tenants, api_keys, audit_log to flywheel_auth;

-- Resolves a presented API key (by its SHA-256) to its tenant and role.
create function auth_lookup_api_key(p_key_hash bytea)
returns table (tenant_id uuid, key_id uuid, role text, tenant_status text)
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select k.tenant_id, k.id, k.role, t.status
    from api_keys k
    join tenants t on t.id = k.tenant_id
   where k.key_hash = p_key_hash
     and k.revoked_at is null
     and (k.expires_at is null or k.expires_at > now())
$$;

-- Resolves a tenant slug (for public pages and the operator CLI).
create function auth_tenant_by_slug(p_slug text)
returns uuid
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select id from tenants where slug = p_slug and status <> 'deleted'
$$;

-- Creates a tenant with its first owner API key and an audit entry, in the caller's
-- transaction. The tenant context is set only for the inserts and restored afterwards.
create function auth_create_tenant(p_name text, p_slug text, p_key_name text, p_key_prefix text,
                                   p_key_hash bytea, p_actor text)
returns uuid
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_id uuid := gen_random_uuid();
  v_prev text := current_setting('app.tenant_id', true);
begin
  perform set_config('app.tenant_id', v_id::text, true);
  insert into tenants (id, name, slug) values (v_id, p_name, p_slug);
  insert into api_keys (tenant_id, name, prefix, key_hash, role)
       values (v_id, p_key_name, p_key_prefix, p_key_hash, 'owner');
  insert into audit_log (tenant_id, actor, actor_kind, action, target_type, target_id, after)
       values (v_id, p_actor, 'operator', 'tenant.create', 'tenant', v_id::text,
               jsonb_build_object('name', p_name, 'slug', p_slug, 'api_key_prefix', p_key_prefix));
  perform set_config('app.tenant_id', coalesce(v_prev, ''), true);
  return v_id;
end $$;

-- The tenant insert is allowed for flywheel_auth only, for the tenant it is creating.
create policy auth_create on tenants for insert to flywheel_auth
  with check (id = (select nullif(current_setting('app.tenant_id', true), '')::uuid));

-- Owning a function needs CREATE on its schema; flywheel_auth cannot log in, so the right is
-- only ever used through these three functions.
grant usage, create on schema public to flywheel_auth;
alter function auth_lookup_api_key(bytea) owner to flywheel_auth;
alter function auth_tenant_by_slug(text) owner to flywheel_auth;
alter function auth_create_tenant(text, text, text, text, bytea, text) owner to flywheel_auth;
revoke execute on function auth_lookup_api_key(bytea) from public;
revoke execute on function auth_tenant_by_slug(text) from public;
revoke execute on function auth_create_tenant(text, text, text, text, bytea, text) from public;
grant execute on function auth_lookup_api_key(bytea) to flywheel_app;
grant execute on function auth_tenant_by_slug(text) to flywheel_app;
grant execute on function auth_create_tenant(text, text, text, text, bytea, text) to flywheel_app;

-- ---------------------------------------------------------------------------------------------
-- Grants to the application role
-- ---------------------------------------------------------------------------------------------

grant usage on schema public to flywheel_app, flywheel_auth;
grant select, insert, update, delete on all tables in schema public to flywheel_app;
revoke insert, delete on tenants from flywheel_app;
revoke update on tenants from flywheel_app;
grant update (name, settings) on tenants to flywheel_app;
revoke update, delete, truncate on audit_log from flywheel_app;
revoke all on _sqlx_migrations from flywheel_app;
alter default privileges for role flywheel_owner in schema public
  grant select, insert, update, delete on tables to flywheel_app;
