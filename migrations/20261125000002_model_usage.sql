-- Language-model token accounting and per-tenant token budgets.
--
-- Every call a tenant's agents make to a language model is one `model_usage` row. The row is
-- written *before* the call as a reservation of the call's worst case (prompt estimate plus the
-- output cap), under a per-tenant advisory lock, and settled with the tokens the provider
-- reported once the call returns (or released if it spent nothing). Budgets are checked against
-- settled tokens plus live reservations, so concurrent calls of one tenant cannot overspend
-- together. A reservation whose process died stops counting after a while (the application's
-- reservation TTL) and can be told apart by its status.
-- Never edit once landed: add a new migration instead.

-- A token ceiling per tenant and period (calendar day or month, UTC). No row for a period means
-- the node's default for it applies.
create table model_budgets (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  period text not null check (period in ('day', 'month')),
  token_limit bigint not null check (token_limit >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint model_budgets_tenant_id_period_key unique (tenant_id, period)
);

create table model_usage (
  tenant_id uuid not null references tenants (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  -- The agent run the call served, if any. Usage outlives the run: accounting is not erased
  -- with it.
  run_id uuid,
  task text not null check (task ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' and length(task) <= 100),
  provider text not null check (length(provider) between 1 and 64),
  model text not null check (length(model) between 1 and 200),
  -- reserved: the call is in flight and `reserved_tokens` counts against the budget;
  -- settled: the call returned and `prompt_tokens + completion_tokens` count;
  -- released: the call spent nothing (transport failure) and nothing counts.
  status text not null default 'reserved' check (status in ('reserved', 'settled', 'released')),
  reserved_tokens bigint not null default 0 check (reserved_tokens >= 0),
  prompt_tokens bigint not null default 0 check (prompt_tokens >= 0),
  completion_tokens bigint not null default 0 check (completion_tokens >= 0),
  error text check (length(error) <= 2000),
  settled_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  constraint model_usage_settled_check check ((status = 'reserved') = (settled_at is null)),
  foreign key (tenant_id, run_id) references agent_runs (tenant_id, id) on delete set null (run_id)
);
create index model_usage_tenant_created_idx on model_usage (tenant_id, created_at);
create index model_usage_tenant_run_idx on model_usage (tenant_id, run_id) where run_id is not null;

select flywheel_enable_tenant_rls('model_budgets');
select flywheel_enable_tenant_rls('model_usage');
select flywheel_timestamps('model_budgets');
select flywheel_timestamps('model_usage');

-- Accounting is settled, never erased, by the application: it may insert, read and settle
-- usage rows, not delete them (they go with their tenant).
revoke delete, truncate on model_usage from flywheel_app;
