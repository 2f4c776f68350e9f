-- The cluster: nodes register and heartbeat here, and each virtual shard of tenants is owned by
-- the node holding its lease. PostgreSQL is the arbiter: every lease decision is one
-- conditional statement judged by the database's clock, never a node's, and every checkpoint
-- of a run re-checks the lease under a share lock in its own transaction (the fence).
--
-- These tables hold no tenant data (no tenant_id), so row-level security does not apply.

create table cluster_nodes (
  node_id text primary key check (node_id ~ '^[A-Za-z0-9._-]{1,64}$'),
  cluster_addr text,
  grpc_addr text,
  http_addr text,
  -- A draining node hands its shards over and takes none.
  draining boolean not null default false,
  started_at timestamptz not null default clock_timestamp(),
  heartbeat_at timestamptz not null default clock_timestamp(),
  -- Set when the node shuts down gracefully; a node that stops heartbeating without it died.
  left_at timestamptz
);

create table shard_leases (
  shard integer primary key check (shard >= 0 and shard < 256),
  owner_node text,
  -- Raised by one on every acquisition; a write fenced on an older epoch fails.
  epoch bigint not null default 0 check (epoch >= 0),
  expires_at timestamptz not null default 'epoch',
  acquired_at timestamptz
);
insert into shard_leases (shard) select generate_series(0, 255);

-- The history of every lease: one acquisition per (shard, epoch), enforced by the key.
create table shard_lease_log (
  id bigint generated always as identity primary key,
  shard integer not null,
  epoch bigint not null,
  owner_node text not null,
  event text not null check (event in ('acquired', 'released')),
  at timestamptz not null default clock_timestamp(),
  constraint shard_lease_log_once unique (shard, epoch, event)
);
create index shard_lease_log_node_idx on shard_lease_log (owner_node, at);

-- Which node committed a step, under which lease epoch (null for steps committed by a human
-- decision through the API, which are fenced by the run's cursor alone).
alter table run_steps add column node_id text, add column lease_epoch bigint;

-- The admin control plane lists and suspends tenants across tenants. Like the other pre-tenant
-- functions these run as flywheel_auth; the admin token is checked by the caller.
create policy auth_admin_update on tenants for update to flywheel_auth using (true) with check (true);
grant update (status) on tenants to flywheel_auth;

create function admin_tenants(p_after uuid, p_limit integer)
returns table (id uuid, name text, slug text, status text, created_at timestamptz)
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select t.id, t.name, t.slug, t.status, t.created_at
    from tenants t
   where p_after is null or t.id > p_after
   order by t.id
   limit least(greatest(p_limit, 1), 1000)
$$;
alter function admin_tenants(uuid, integer) owner to flywheel_auth;
revoke execute on function admin_tenants(uuid, integer) from public;
grant execute on function admin_tenants(uuid, integer) to flywheel_app;

create function admin_set_tenant_status(p_tenant uuid, p_status text)
returns table (id uuid, name text, slug text, status text, created_at timestamptz)
language sql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
  update tenants t set status = p_status
   where t.id = p_tenant and t.status <> 'deleted' and p_status in ('active', 'suspended')
  returning t.id, t.name, t.slug, t.status, t.created_at
$$;
alter function admin_set_tenant_status(uuid, text) owner to flywheel_auth;
revoke execute on function admin_set_tenant_status(uuid, text) from public;
grant execute on function admin_set_tenant_status(uuid, text) to flywheel_app;
