//! The entries of a PostgreSQL archive that an in-place restore leaves out, chosen from
//! `pg_restore`'s own table of contents (`pg_restore --list`, edited, `--use-list`).
//!
//! An in-place restore runs as the application's user, and an ordinary user's emptying
//! (`DROP OWNED`, see `pg_empty.sql`) keeps what other roles own. Some of that is routine
//! in a database a DBA set up, and the dump still (re)creates it: a schema another role
//! owns that the application's objects live in (`CREATE SCHEMA app;` fails: it exists),
//! its comment and privileges (only its owner may change them), an extension a superuser
//! created (`COMMENT ON EXTENSION` needs its owner), and default privileges another role
//! set (`ALTER DEFAULT PRIVILEGES FOR ROLE dba …`, which only that role may change). Each
//! would fail every restore. They are there already, as the emptying left them, so their
//! entries are left out; everything else — table data, the user's own objects and their
//! privileges — is restored.
//!
//! A line of the list is `ID; TABLEOID OID DESC SCHEMA TAG OWNER`: the entry's kind
//! (`SCHEMA`, `ACL`, `COMMENT`, `DEFAULT ACL`, …), its schema (`-` for none), its tag (the
//! name pg_dump gives it, as the script's `-- Name:` header shows it) and its owner
//! (empty for an extension). Lines starting with `;` are comments. Nothing but whole
//! lines is removed, and the lines kept stay in their order, so `pg_restore` reads a
//! streamed archive front to back as before.

/// Objects another role owns that the emptying keeps and the restore must not create,
/// comment on or grant on again; and the user restoring, whose own default privileges
/// alone the restore sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// The user the restore runs as, as the catalog stores it.
    pub user: String,
    /// Schemas.
    pub schemas: Vec<Name>,
    /// Extensions, as SQL writes their names.
    pub extensions: Vec<String>,
}

/// A name as it is, and as SQL writes it (quoted where needed: upper case, a keyword…),
/// which is how pg_dump tags a comment's or a grant's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// As stored.
    pub raw: String,
    /// As the server's `quote_ident` writes it.
    pub sql: String,
}

impl Kept {
    /// The SQL that lists them for the connected user, who is not a superuser (a
    /// superuser's emptying drops everything and its restore leaves nothing out). Rows:
    /// `kind` (`user`, `schema`, `extension`), the name and the name as SQL writes it.
    pub const QUERY: &'static str = "\
        WITH me AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) \
        SELECT 'user' AS kind, current_user::text AS name, quote_ident(current_user) AS sql \
        UNION ALL \
        SELECT 'schema', nspname::text, quote_ident(nspname) FROM pg_catalog.pg_namespace, me \
        WHERE nspowner <> me.oid \
          AND nspname NOT IN ('pg_catalog', 'information_schema') \
          AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' \
        UNION ALL \
        SELECT 'extension', extname::text, quote_ident(extname) FROM pg_catalog.pg_extension, me \
        WHERE extowner <> me.oid";

    /// Whether the entry of a list line (past its ids: `DESC SCHEMA TAG OWNER`) is one to
    /// leave out.
    fn leaves_out(&self, entry: &str) -> bool {
        let tagged = |prefix: &str, name: &str| {
            entry
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|owner| owner.starts_with(' ') && !owner[1..].contains(' '))
        };
        if let Some(rest) = entry.strip_prefix("DEFAULT ACL ") {
            // `DEFAULT ACL app DEFAULT PRIVILEGES FOR TABLES owner`: whose they are.
            return !rest.ends_with(&format!(" {}", self.user));
        }
        self.schemas.iter().any(|s| {
            tagged("SCHEMA - ", &s.raw)
                || tagged("COMMENT - SCHEMA ", &s.sql)
                || tagged("ACL - SCHEMA ", &s.sql)
        }) || self
            .extensions
            .iter()
            .any(|e| tagged("COMMENT - EXTENSION ", e))
    }
}

/// `list` (the output of `pg_restore --list`) without the entries of `kept`, and how many
/// entries were left out.
pub fn leave_out(list: &str, kept: &Kept) -> (String, usize) {
    let mut out = String::with_capacity(list.len());
    let mut left_out = 0;
    for line in list.lines() {
        let entry = (!line.starts_with(';'))
            .then(|| line.split_once("; "))
            .flatten()
            // Past `TABLEOID OID `.
            .and_then(|(_, rest)| rest.splitn(3, ' ').nth(2));
        if entry.is_some_and(|entry| kept.leaves_out(entry)) {
            left_out += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pg_restore --list` printed for a database a DBA set up (PostgreSQL 15):
    /// schema `app` and extension `pg_trgm` of `postgres`, `CREATE` on `public` granted to
    /// the user, default privileges of both roles.
    const LIST: &str = "\
;
; Archive created at 2026-12-08 02:16:04 UTC
;     dbname: t_live
;
; Selected TOC Entries:
;
7; 2615 18146 SCHEMA - app postgres
3408; 0 0 COMMENT - SCHEMA app postgres
3409; 0 0 ACL - SCHEMA app postgres
8; 2615 18150 SCHEMA - Odd One postgres
3414; 0 0 ACL - SCHEMA \"Odd One\" postgres
3410; 0 0 ACL - SCHEMA public pg_database_owner
2; 3079 18147 EXTENSION - pg_trgm 
3411; 0 0 COMMENT - EXTENSION pg_trgm 
218; 1259 18237 TABLE app u App User
217; 1259 18236 SEQUENCE app u_id_seq App User
3402; 0 18237 TABLE DATA app u App User
3415; 0 0 ACL app TABLE u App User
2089; 826 18228 DEFAULT ACL app DEFAULT PRIVILEGES FOR TABLES postgres
2090; 826 18243 DEFAULT ACL - DEFAULT PRIVILEGES FOR TABLES App User
";

    fn kept() -> Kept {
        Kept {
            user: "App User".into(),
            schemas: vec![
                Name {
                    raw: "app".into(),
                    sql: "app".into(),
                },
                Name {
                    raw: "Odd One".into(),
                    sql: "\"Odd One\"".into(),
                },
                Name {
                    raw: "public".into(),
                    sql: "public".into(),
                },
            ],
            extensions: vec!["pg_trgm".into()],
        }
    }

    #[test]
    fn what_other_roles_own_is_left_out_by_whole_lines_in_order() {
        let (list, left_out) = leave_out(LIST, &kept());
        let kept_ids: Vec<&str> = list
            .lines()
            .filter(|l| !l.starts_with(';'))
            .map(|l| l.split(';').next().unwrap())
            .collect();
        // The schemas, their comment and grants, the extension's comment and the
        // default privileges of postgres go; the extension itself (created IF NOT
        // EXISTS), the user's objects, their grants and its own defaults stay, in order.
        assert_eq!(kept_ids, ["2", "218", "217", "3402", "3415", "2090"]);
        assert_eq!(left_out, 8);
        assert!(list.starts_with(";\n; Archive created"), "{list}");
    }

    #[test]
    fn a_name_that_only_begins_like_a_kept_one_is_restored() {
        let list = "9; 2615 1 SCHEMA - app2 App User\n10; 0 0 ACL - SCHEMA app2 App User\n";
        assert_eq!(leave_out(list, &kept()), (list.to_string(), 0));
    }

    #[test]
    fn without_anything_kept_only_other_roles_defaults_go() {
        let none = Kept {
            user: "App User".into(),
            ..Kept::default()
        };
        let (list, left_out) = leave_out(LIST, &none);
        assert_eq!(left_out, 1);
        assert!(!list.contains("FOR TABLES postgres"), "{list}");
        assert!(list.contains("SCHEMA - app postgres"), "{list}");
    }
}
