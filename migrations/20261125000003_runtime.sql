-- The actor runtime's durable state beyond the foundation's agent_runs / run_steps / approvals /
-- outbox: per-tenant approval policies, the reason a decision was made, and the one pre-tenant
-- query a starting node needs (which tenants have unfinished runs).

-- Per-tenant rules that auto-approve a kind of approval under conditions. `rule` is interpreted
-- by the runtime: {"auto_approve": true} approves every request of the kind;
-- {"max_change_ratio": 0.1} approves a numeric change of at most 10 % (e.g. an ad budget).
create table approval_policies (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  kind text not null check (kind in ('brand_positioning', 'campaign_strategy', 'ad_budget_scaling',
                                     'influencer_contract', 'affiliate_commission')),
  rule jsonb not null check (jsonb_typeof(rule) = 'object'),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint approval_policies_tenant_id_kind_key unique (tenant_id, kind)
);
select flywheel_enable_tenant_rls('approval_policies');
select flywheel_timestamps('approval_policies');

-- Runs re-queued by a decision remember which approval let them continue.
alter table approvals add column decision text
  check (decision in ('approve', 'reject', 'edit', 'force', 'auto'));

create index run_steps_tenant_run_idx on run_steps (tenant_id, run_id, created_at);
create index approvals_tenant_run_idx on approvals (tenant_id, run_id);

-- Which tenants have runs to resume (queued, running or paused-by-crash). Returns tenant ids
-- only; the runs themselves are read under each tenant's own context.
create policy auth_resume on agent_runs for select to flywheel_auth using (true);
grant select on agent_runs to flywheel_auth;

create function runs_unfinished_tenants()
returns setof uuid
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select distinct tenant_id from agent_runs where status in ('queued', 'running')
$$;
alter function runs_unfinished_tenants() owner to flywheel_auth;
revoke execute on function runs_unfinished_tenants() from public;
grant execute on function runs_unfinished_tenants() to flywheel_app;

-- Which tenants have outbox effects due (pending, or in flight past their lease: the relay that
-- took them died). Returns tenant ids only; the effects are read under each tenant's context.
create policy auth_relay on outbox for select to flywheel_auth using (true);
grant select on outbox to flywheel_auth;

create function outbox_due_tenants()
returns setof uuid
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select distinct tenant_id from outbox
   where status in ('pending', 'in_flight') and available_at <= now()
$$;
alter function outbox_due_tenants() owner to flywheel_auth;
revoke execute on function outbox_due_tenants() from public;
grant execute on function outbox_due_tenants() to flywheel_app;

create index outbox_tenant_due_idx on outbox (tenant_id, available_at) where status in ('pending', 'in_flight');
