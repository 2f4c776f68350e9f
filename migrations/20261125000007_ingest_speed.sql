-- Faster event ingestion (issue 4): `events` loses its five foreign keys, whose per-row checks
-- cost more than the rest of an insert, and the ingestor stores a whole batch with one call of
-- `flywheel_ingest_events`, whose plans are prepared once per connection instead of once per
-- tenant and batch.
--
-- What the foreign keys guaranteed, and what guarantees it now:
-- - A reference names a row of the event's own tenant: the ingestor (the only writer of
--   `events`) resolves every reference under the tenant's row-level security, so a lead,
--   campaign, landing page or email the tenant does not have becomes NULL.
-- - Deleting a lead, campaign, landing page or email clears it from the tenant's events: the
--   statement-level triggers below (one UPDATE per statement and tenant, not one per row).
-- - Deleting a tenant deletes its events: a trigger on `tenants`.
-- - A reference is never written after its row is deleted: the ingestor and these triggers take
--   the same per-tenant advisory lock (`flywheel.events:<tenant>`), the ingestor before it
--   resolves anything, the triggers before they clear; the ingestor skips a tenant that no longer
--   exists. Assumes READ COMMITTED (every statement sees what was committed before the lock).

alter table events
  drop constraint events_tenant_id_fkey,
  drop constraint events_tenant_id_lead_id_fkey,
  drop constraint events_tenant_id_campaign_id_fkey,
  drop constraint events_tenant_id_landing_page_id_fkey,
  drop constraint events_tenant_id_email_id_fkey;

-- The lock the ingestor holds while it writes a tenant's events.
create function flywheel_events_lock(p_tenant uuid) returns void
language sql volatile
as $$ select pg_advisory_xact_lock(hashtextextended('flywheel.events:' || p_tenant::text, 0)) $$;

-- Before a delete on a referenced table: the lock of the deleting session's tenant, taken before
-- any row is locked, so a delete and an ingestor always lock in the same order.
create function flywheel_events_lock_current_tenant() returns trigger
language plpgsql volatile
as $$
declare
  v_tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
begin
  if v_tenant is not null then
    perform flywheel_events_lock(v_tenant);
  end if;
  return null;
end $$;

-- After a delete on a referenced table: clears the deleted rows from their tenants' events, each
-- tenant under its own context (row-level security stays forced for the owner).
create function flywheel_events_forget_references() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_prev text := current_setting('app.tenant_id', true);
  v_tenant uuid;
begin
  for v_tenant in select distinct g.tenant_id from gone g order by 1 loop
    perform set_config('app.tenant_id', v_tenant::text, true), flywheel_events_lock(v_tenant);
    case tg_table_name
      when 'leads' then
        update events e set lead_id = null
         where e.tenant_id = v_tenant and e.lead_id in (select g.id from gone g where g.tenant_id = v_tenant);
      when 'campaigns' then
        update events e set campaign_id = null
         where e.tenant_id = v_tenant and e.campaign_id in (select g.id from gone g where g.tenant_id = v_tenant);
      when 'landing_pages' then
        update events e set landing_page_id = null
         where e.tenant_id = v_tenant and e.landing_page_id in (select g.id from gone g where g.tenant_id = v_tenant);
      when 'emails' then
        update events e set email_id = null
         where e.tenant_id = v_tenant and e.email_id in (select g.id from gone g where g.tenant_id = v_tenant);
    end case;
  end loop;
  perform set_config('app.tenant_id', coalesce(v_prev, ''), true);
  return null;
end $$;

create trigger events_lock before delete on leads
  for each statement execute function flywheel_events_lock_current_tenant();
create trigger events_lock before delete on campaigns
  for each statement execute function flywheel_events_lock_current_tenant();
create trigger events_lock before delete on landing_pages
  for each statement execute function flywheel_events_lock_current_tenant();
create trigger events_lock before delete on emails
  for each statement execute function flywheel_events_lock_current_tenant();
create trigger events_forget after delete on leads referencing old table as gone
  for each statement execute function flywheel_events_forget_references();
create trigger events_forget after delete on campaigns referencing old table as gone
  for each statement execute function flywheel_events_forget_references();
create trigger events_forget after delete on landing_pages referencing old table as gone
  for each statement execute function flywheel_events_forget_references();
create trigger events_forget after delete on emails referencing old table as gone
  for each statement execute function flywheel_events_forget_references();

-- Deleting a tenant deletes its events first (before the cascades to its leads and the rest,
-- which then find no event to clear).
create function flywheel_events_forget_tenant() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_prev text := current_setting('app.tenant_id', true);
begin
  perform set_config('app.tenant_id', old.id::text, true), flywheel_events_lock(old.id);
  delete from events where tenant_id = old.id;
  perform set_config('app.tenant_id', coalesce(v_prev, ''), true);
  return old;
end $$;

create trigger events_forget before delete on tenants
  for each row execute function flywheel_events_forget_tenant();

-- Stores one batch of events, grouped by tenant: the rows of group i are the elements
-- p_ends[i - 1] + 1 .. p_ends[i] of the row arrays (p_ends[0] = 0), all of tenant p_tenants[i].
-- Per tenant, under its own context (SECURITY INVOKER: row-level security applies as to any
-- other statement of the app): the advisory lock, identity stitching when a row identifies, then
-- the insert. Returns the rows written (events, leads, visitor links).
--
-- Exactly once: a row is new unless the tenant has its id within a day of its occurred_at (the
-- index probe below; the lock makes every earlier batch of the tenant visible to it) and the
-- batch repeats no (tenant, id) (the caller removes repeats); ON CONFLICT still catches a twin
-- written by anything that does not take the lock. A reference resolves only when the row
-- carries one, to NULL when the tenant has no such row.
--
-- Plans: force_generic_plan, so each statement is planned once per connection (a plan is
-- invalidated when a table's statistics change). Every plan starts from the function's arrays,
-- which have no statistics, and probes indexes by key: no ANALYZE of anything temporary is needed.
create function flywheel_ingest_events(
  p_tenants uuid[], p_ends integer[],
  p_id uuid[], p_event_type text[], p_source text[], p_occurred_at timestamptz[], p_received_at timestamptz[],
  p_session_id text[], p_visitor_id text[], p_lead_id uuid[], p_campaign_id uuid[], p_landing_page_id uuid[],
  p_email_id uuid[], p_ad_id text[], p_meta text[], p_identify_email text[])
returns bigint
language plpgsql volatile security invoker
set plan_cache_mode = force_generic_plan
as $$
declare
  v_prev text := current_setting('app.tenant_id', true);
  v_tenant uuid;
  v_lo integer := 1;
  v_hi integer;
  v_rows bigint := 0;
  v_n bigint;
begin
  if cardinality(p_tenants) <> cardinality(p_ends)
     or coalesce(p_ends[cardinality(p_ends)], 0) <> cardinality(p_id) then
    raise exception 'flywheel_ingest_events: % groups end at %, for % rows',
      cardinality(p_tenants), p_ends[cardinality(p_ends)], cardinality(p_id) using errcode = '22023';
  end if;
  for i in 1 .. cardinality(p_tenants) loop
    v_tenant := p_tenants[i];
    v_hi := p_ends[i];
    perform set_config('app.tenant_id', v_tenant::text, true), flywheel_events_lock(v_tenant);
    -- A tenant deleted meanwhile (its trigger took the lock first) gets no events.
    if exists (select from tenants t where t.id = v_tenant) then
      if exists (select from unnest(p_identify_email[v_lo:v_hi], p_lead_id[v_lo:v_hi], p_visitor_id[v_lo:v_hi])
                          as s (identify_email, lead_id, visitor_id)
                  where s.identify_email is not null or (s.lead_id is not null and s.visitor_id is not null)) then
        -- An identifying email names a lead, created if new.
        insert into leads (tenant_id, email, source)
          select distinct v_tenant, s.identify_email, 'tracking'
            from unnest(p_identify_email[v_lo:v_hi]) as s (identify_email)
           where s.identify_email is not null
        on conflict (tenant_id, email) do nothing;
        get diagnostics v_n = row_count;
        v_rows := v_rows + v_n;
        -- Its visitor (not a cookieless one) is linked to that lead, or to the lead the event
        -- names; the latest identification wins.
        insert into visitor_links (tenant_id, visitor_id, lead_id, linked_at)
          select distinct on (s.visitor_id) v_tenant, s.visitor_id, s.lead, s.occurred_at
            from (select s.visitor_id, s.occurred_at,
                         case when s.identify_email is not null then
                                (select l.id from leads l where l.tenant_id = v_tenant and l.email = s.identify_email)
                              else (select l.id from leads l where l.tenant_id = v_tenant and l.id = s.lead_id)
                         end as lead
                    from unnest(p_visitor_id[v_lo:v_hi], p_occurred_at[v_lo:v_hi], p_lead_id[v_lo:v_hi],
                                p_identify_email[v_lo:v_hi]) as s (visitor_id, occurred_at, lead_id, identify_email)
                   where s.visitor_id is not null and s.visitor_id not like 'c.%'
                     and (s.identify_email is not null or s.lead_id is not null)) s
           where s.lead is not null
           order by s.visitor_id, s.occurred_at desc
        on conflict (tenant_id, visitor_id) do update
           set lead_id = excluded.lead_id, linked_at = excluded.linked_at
         where visitor_links.linked_at <= excluded.linked_at;
        get diagnostics v_n = row_count;
        v_rows := v_rows + v_n;
      end if;
      insert into events (tenant_id, id, event_type, source, occurred_at, received_at, session_id, visitor_id,
                          lead_id, campaign_id, landing_page_id, email_id, ad_id, meta)
      select v_tenant, s.id, s.event_type, s.source, s.occurred_at, s.received_at, s.session_id, s.visitor_id,
             case
               when s.identify_email is not null then
                 (select l.id from leads l where l.tenant_id = v_tenant and l.email = s.identify_email)
               when s.lead_id is not null then
                 coalesce((select l.id from leads l where l.tenant_id = v_tenant and l.id = s.lead_id),
                          (select v.lead_id from visitor_links v
                            where v.tenant_id = v_tenant and v.visitor_id = s.visitor_id))
               when s.visitor_id is not null then
                 (select v.lead_id from visitor_links v where v.tenant_id = v_tenant and v.visitor_id = s.visitor_id)
             end,
             case when s.campaign_id is not null then
               (select r.id from campaigns r where r.tenant_id = v_tenant and r.id = s.campaign_id) end,
             case when s.landing_page_id is not null then
               (select r.id from landing_pages r where r.tenant_id = v_tenant and r.id = s.landing_page_id) end,
             case when s.email_id is not null then
               (select r.id from emails r where r.tenant_id = v_tenant and r.id = s.email_id) end,
             s.ad_id, s.meta::jsonb
        -- The window's bounds are computed here, outside the probe: an expression with a
        -- non-leakproof operator (timestamptz - interval) inside it would have to wait for the
        -- row-level-security qual and could not bound the index scan.
        from (select u.*, u.occurred_at - interval '1 day' as dedup_from,
                     u.occurred_at + interval '1 day' as dedup_to
                from unnest(p_id[v_lo:v_hi], p_event_type[v_lo:v_hi], p_source[v_lo:v_hi], p_occurred_at[v_lo:v_hi],
                            p_received_at[v_lo:v_hi], p_session_id[v_lo:v_hi], p_visitor_id[v_lo:v_hi],
                            p_lead_id[v_lo:v_hi], p_campaign_id[v_lo:v_hi], p_landing_page_id[v_lo:v_hi],
                            p_email_id[v_lo:v_hi], p_ad_id[v_lo:v_hi], p_meta[v_lo:v_hi],
                            p_identify_email[v_lo:v_hi])
                     as u (id, event_type, source, occurred_at, received_at, session_id, visitor_id, lead_id,
                           campaign_id, landing_page_id, email_id, ad_id, meta, identify_email)
              offset 0) s
       where not exists (select from events e
                          where e.tenant_id = v_tenant and e.id = s.id
                            and e.occurred_at between s.dedup_from and s.dedup_to)
      on conflict do nothing;
      get diagnostics v_n = row_count;
      v_rows := v_rows + v_n;
    end if;
    v_lo := v_hi + 1;
  end loop;
  perform set_config('app.tenant_id', coalesce(v_prev, ''), true);
  return v_rows;
end $$;

revoke execute on function flywheel_ingest_events(uuid[], integer[], uuid[], text[], text[], timestamptz[],
  timestamptz[], text[], text[], uuid[], uuid[], uuid[], uuid[], text[], text[], text[]) from public;
grant execute on function flywheel_ingest_events(uuid[], integer[], uuid[], text[], text[], timestamptz[],
  timestamptz[], text[], text[], uuid[], uuid[], uuid[], uuid[], text[], text[], text[]) to flywheel_app;
