//! The PostgreSQL restore script, trimmed of what the emptying keeps.
//!
//! An ordinary user's emptying (`DROP OWNED`, see `pg_empty.sql`) keeps what other roles
//! own. Two such things are routine in a database a DBA set up and the dump still
//! (re)creates: a schema another role owns and the application's objects live in
//! (`CREATE SCHEMA app;` fails: it exists), and an extension a superuser created (`CREATE
//! EXTENSION IF NOT EXISTS` passes, but its `COMMENT ON EXTENSION` needs its owner).
//! Either would fail every restore, the rollback of a failed upgrade included. The
//! restore leaves out of `pg_restore`'s script the entries that create, comment on or
//! grant on those objects: they are there already, as the emptying left them, with their
//! privileges. Privileges are restored for everything else (what the user owns), so a
//! role granted the application's tables can still read them after a rollback; default
//! privileges another role set (`ALTER DEFAULT PRIVILEGES FOR ROLE dba …`, which the
//! emptying keeps and only that role may change) are left out too.
//!
//! `pg_restore` starts each entry with a comment block naming it (`-- Name: app; Type:
//! SCHEMA; Schema: -; Owner: -`); an entry left out goes from its block to the next
//! block. Table data (`COPY … FROM stdin;` up to `\.`) is passed on untouched, so a row
//! that reads like a header is never taken for one.

use std::collections::HashSet;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Objects another role owns that the emptying keeps and the script must not create,
/// comment on or grant on again; and the user restoring, whose own default privileges
/// alone the script sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// The user the restore runs as, as SQL writes it; empty for a superuser (every entry
    /// is its own).
    pub user: String,
    /// Schemas.
    pub schemas: Vec<Name>,
    /// Extensions, as SQL writes their names.
    pub extensions: Vec<String>,
}

/// A name as it is, and as SQL writes it (quoted where needed: upper case, a keyword…),
/// which is how `pg_dump` names it in a comment's or grant's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// As stored.
    pub raw: String,
    /// As the server's `quote_ident` writes it.
    pub sql: String,
}

impl Kept {
    /// The SQL that lists them for the connected user: nothing for a superuser, whose
    /// emptying drops everything. Rows: `kind` (`user`, `schema`, `extension`), the name
    /// and the name as SQL writes it.
    pub const QUERY: &'static str = "\
        WITH me AS (SELECT oid, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) \
        SELECT 'user' AS kind, current_user::text AS name, quote_ident(current_user) AS sql \
        FROM me WHERE NOT me.rolsuper \
        UNION ALL \
        SELECT 'schema', nspname::text, quote_ident(nspname) FROM pg_catalog.pg_namespace, me \
        WHERE NOT me.rolsuper AND nspowner <> me.oid \
          AND nspname NOT IN ('pg_catalog', 'information_schema') \
          AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' \
        UNION ALL \
        SELECT 'extension', extname::text, quote_ident(extname) FROM pg_catalog.pg_extension, me \
        WHERE NOT me.rolsuper AND extowner <> me.oid";

    /// Whether nothing is left out (a superuser's restore: the script passes whole).
    pub fn is_empty(&self) -> bool {
        self.user.is_empty() && self.schemas.is_empty() && self.extensions.is_empty()
    }

    /// Whether a default-privileges statement is one the user may run: its own
    /// (`ALTER DEFAULT PRIVILEGES FOR ROLE <user> …`), or any for a superuser.
    fn own_default(&self, statement: &[u8]) -> bool {
        if self.user.is_empty() {
            return true;
        }
        let mine = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {} ", self.user);
        statement.starts_with(mine.as_bytes())
    }

    /// The header lines of the entries to leave out, up to the owner (which `--no-owner`
    /// prints as `-`). A comment's name quotes the object's as SQL would.
    fn headers(&self) -> HashSet<Vec<u8>> {
        let mut out = HashSet::new();
        for schema in &self.schemas {
            out.insert(header(&schema.raw, "SCHEMA"));
            let named = format!("SCHEMA {}", schema.sql);
            out.insert(header(&named, "COMMENT"));
            out.insert(header(&named, "ACL"));
        }
        for extension in &self.extensions {
            out.insert(header(&format!("EXTENSION {extension}"), "COMMENT"));
        }
        out
    }
}

fn header(name: &str, kind: &str) -> Vec<u8> {
    format!("-- Name: {name}; Type: {kind}; Schema: -; Owner:").into_bytes()
}

/// How much of the script is read, and written on, at a time.
const CHUNK: usize = 256 * 1024;

/// Where the filter is in the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Between statements, or in an entry that is passed on.
    Script,
    /// In table data, up to `\.`.
    Data,
    /// Past the header of an entry left out, before the `--` that closes its block.
    LeftOutHeader,
    /// In the body of an entry left out, up to the `--` that opens the next block.
    LeftOutBody,
    /// In a default-privileges entry, held back until its statement shows whose
    /// privileges it sets.
    DefaultAcl,
}

/// The type a default-privileges entry's header names.
const DEFAULT_ACL: &[u8] = b"; Type: DEFAULT ACL; ";

/// Copies `script` to `out` leaving out the entries of `kept`; returns how many entries it
/// left out. Closes `out` at the end.
pub async fn leave_out(
    script: impl AsyncRead + Unpin,
    mut out: impl AsyncWrite + Unpin,
    kept: &Kept,
) -> std::io::Result<usize> {
    let headers = kept.headers();
    let mut script = BufReader::with_capacity(CHUNK, script);
    let mut line = Vec::with_capacity(4096);
    // Lines passed on are gathered and written a chunk at a time: most are table rows.
    let mut passed = Vec::with_capacity(2 * CHUNK);
    let mut held = Vec::new();
    let mut at = At::Script;
    let mut left_out = 0;
    loop {
        line.clear();
        if script.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let pass = match at {
            At::DefaultAcl => {
                let statement = !(text.is_empty() || text.starts_with(b"--"));
                held.extend_from_slice(&line);
                if statement {
                    if kept.own_default(text) {
                        passed.append(&mut held);
                        at = At::Script;
                    } else {
                        held.clear();
                        left_out += 1;
                        at = At::LeftOutBody;
                    }
                }
                false
            }
            At::Data => {
                if text == b"\\." {
                    at = At::Script;
                }
                true
            }
            At::LeftOutHeader => {
                if text == b"--" {
                    at = At::LeftOutBody;
                }
                false
            }
            At::LeftOutBody => {
                if text == b"--" {
                    at = At::Script;
                    true
                } else {
                    false
                }
            }
            At::Script => {
                if text.starts_with(b"COPY ") && text.ends_with(b" FROM stdin;") {
                    at = At::Data;
                    true
                } else if text.starts_with(b"-- Name: ")
                    && headers.iter().any(|h| text.starts_with(h))
                {
                    at = At::LeftOutHeader;
                    left_out += 1;
                    false
                } else if text.starts_with(b"-- Name: ")
                    && text.windows(DEFAULT_ACL.len()).any(|w| w == DEFAULT_ACL)
                {
                    held.extend_from_slice(&line);
                    at = At::DefaultAcl;
                    false
                } else {
                    true
                }
            }
        };
        if pass {
            passed.extend_from_slice(&line);
            if passed.len() >= CHUNK {
                out.write_all(&passed).await?;
                passed.clear();
            }
        }
    }
    // A default-privileges entry the script ends in (never seen): passed on as it was.
    passed.append(&mut held);
    out.write_all(&passed).await?;
    out.shutdown().await?;
    Ok(left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
BEGIN;

--
-- Name: app; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA app;


--
-- Name: SCHEMA app; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA app IS 'two
lines';


--
-- Name: Odd One; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA \"Odd One\";


--
-- Name: pg_trgm; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;


--
-- Name: EXTENSION pg_trgm; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON EXTENSION pg_trgm IS 'text similarity';


--
-- Name: SCHEMA app; Type: ACL; Schema: -; Owner: -
--

GRANT ALL ON SCHEMA app TO \"App User\";


--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: app; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA app GRANT SELECT ON TABLES  TO reporting;


--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: -; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE \"App User\" GRANT SELECT ON TABLES  TO reporting;


--
-- Name: t; Type: TABLE; Schema: app; Owner: -
--

CREATE TABLE app.t (
    s text
);


--
-- Data for Name: t; Type: TABLE DATA; Schema: app; Owner: -
--

COPY app.t (s) FROM stdin;
-- Name: app; Type: SCHEMA; Schema: -; Owner: -
--
CREATE SCHEMA app;
\\.


--
-- Name: TABLE t; Type: ACL; Schema: app; Owner: -
--

GRANT SELECT ON TABLE app.t TO reporting;


COMMIT;
";

    async fn filtered(kept: &Kept) -> (String, usize) {
        let mut out = Vec::new();
        let n = leave_out(SCRIPT.as_bytes(), &mut out, kept).await.unwrap();
        (String::from_utf8(out).unwrap(), n)
    }

    #[tokio::test]
    async fn a_superuser_s_restore_passes_the_script_as_it_is() {
        assert!(Kept::default().is_empty());
        assert_eq!(filtered(&Kept::default()).await, (SCRIPT.to_owned(), 0));
    }

    #[tokio::test]
    async fn a_kept_schema_and_extension_lose_their_entries_and_nothing_else() {
        let name = |raw: &str, sql: &str| Name {
            raw: raw.into(),
            sql: sql.into(),
        };
        let kept = Kept {
            user: "\"App User\"".into(),
            schemas: vec![name("app", "app"), name("Odd One", "\"Odd One\"")],
            extensions: vec!["pg_trgm".into()],
        };
        let (out, n) = filtered(&kept).await;
        assert_eq!(n, 6, "{out}");
        // The entries are gone, up to the block of the next one.
        for gone in [
            "\nCREATE SCHEMA app;\n\n",
            "COMMENT ON SCHEMA",
            "lines';",
            "CREATE SCHEMA \"Odd One\"",
            "COMMENT ON EXTENSION",
            "GRANT ALL ON SCHEMA app",
            "FOR ROLE postgres",
        ] {
            assert!(!out.contains(gone), "{gone:?} in\n{out}");
        }
        // The extension is still created if missing, the table and its data untouched,
        // also a row that reads like a header.
        assert!(out.contains("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;\n"));
        assert!(out.contains("CREATE TABLE app.t (\n    s text\n);\n"));
        assert!(out.contains(
            "COPY app.t (s) FROM stdin;\n-- Name: app; Type: SCHEMA; Schema: -; Owner: -\n--\nCREATE SCHEMA app;\n\\.\n"
        ));
        // The user's own default privileges and the grants on what it owns stay.
        assert!(out.contains(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"App User\" GRANT SELECT ON TABLES  TO reporting;\n"
        ));
        assert!(out.contains("GRANT SELECT ON TABLE app.t TO reporting;\n"));
        assert!(out.starts_with("BEGIN;\n") && out.ends_with("COMMIT;\n"));
    }

    #[tokio::test]
    async fn an_ordinary_user_with_nothing_kept_loses_only_others_default_privileges() {
        let kept = Kept {
            user: "postgres".into(),
            ..Kept::default()
        };
        let (out, n) = filtered(&kept).await;
        assert_eq!(n, 1, "{out}");
        assert!(out.contains("FOR ROLE postgres IN SCHEMA app"), "{out}");
        assert!(!out.contains("FOR ROLE \"App User\""), "{out}");
        assert!(out.contains("CREATE SCHEMA app;\n") && out.contains("COMMENT ON EXTENSION"));
    }
}
