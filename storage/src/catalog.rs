//! What PostgreSQL's catalog says about tenant isolation: which tables carry a `tenant_id`,
//! whether row-level security is enabled and forced on each, and which role the node runs as.
//! `flywheel doctor` prints it; the catalog test asserts it.

use crate::{Database, Result};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TableSecurity {
    pub table: String,
    /// `r` table, `p` partitioned table.
    pub kind: String,
    pub partition_of: Option<String>,
    pub has_tenant_id: bool,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSecurity {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub owns_tables: bool,
}

impl Database {
    /// Every table and partition in the `public` schema with its row-level security settings.
    pub async fn table_security(&self) -> Result<Vec<TableSecurity>> {
        Ok(sqlx::query_as(
            "select c.relname::text as \"table\", c.relkind::text as kind, p.relname::text as partition_of,
                    exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'
                                                         and not a.attisdropped) as has_tenant_id,
                    c.relrowsecurity as rls_enabled, c.relforcerowsecurity as rls_forced,
                    coalesce((select array_agg(pol.polname::text order by pol.polname)
                                from pg_policy pol where pol.polrelid = c.oid), '{}') as policies
               from pg_class c
               join pg_namespace n on n.oid = c.relnamespace
               left join pg_inherits i on i.inhrelid = c.oid
               left join pg_class p on p.oid = i.inhparent
              where n.nspname = 'public' and c.relkind in ('r', 'p')
              order by c.relname",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The role this node is connected as.
    pub async fn role_security(&self) -> Result<RoleSecurity> {
        let (role, superuser, bypass_rls, owns_tables): (String, bool, bool, bool) = sqlx::query_as(
            "select r.rolname::text, r.rolsuper, r.rolbypassrls,
                    exists (select from pg_class c where c.relowner = r.oid and c.relkind in ('r', 'p')
                                                     and c.relnamespace = 'public'::regnamespace)
               from pg_roles r where r.rolname = current_user",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(RoleSecurity { role, superuser, bypass_rls, owns_tables })
    }
}
