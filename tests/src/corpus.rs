//! An adversarial corpus of schemas and data for the backup tests, written for them and
//! meant to break what a backup tool takes for granted: every column type the engines
//! have (enums in arrays, domains and composites; ranges; OID-valued types; floats with
//! NaN, -0 and 9 significant digits; geometry; collations), a large row, partitions, a
//! table without a primary key, a second schema, 4-byte UTF-8, routines, views,
//! triggers and events with a DEFINER, sequences and counters.
//!
//! [`ScratchDatabase::independent_state`] reads the database back through the engine's
//! own client (`psql`, `mariadb`, `pg_dump`/`mariadb-dump --no-data`), not through
//! cutover's fingerprint, so a test can check the fingerprint against it.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::process::Command;

use crate::database::{Engine, ScratchDatabase};

/// What the engine's own client sees of a database: per table the digest of its rows
/// (sorted), per sequence its value, and the schema-only dump's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndependentState {
    /// `table NAME` → row count and digest of the sorted rows; `sequence NAME` → value.
    pub values: BTreeMap<String, String>,
    /// The schema-only dump (object definitions, and AUTO_INCREMENT counters on MariaDB).
    pub schema: String,
}

impl IndependentState {
    /// The keys whose values differ (and whether the schema differs), for messages.
    pub fn differences(&self, other: &IndependentState) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.values {
            match other.values.get(k) {
                Some(w) if w == v => {}
                Some(w) => out.push(format!("{k}: {v} vs {w}")),
                None => out.push(format!("{k}: missing")),
            }
        }
        for k in other.values.keys() {
            if !self.values.contains_key(k) {
                out.push(format!("{k}: unexpected"));
            }
        }
        if self.schema != other.schema {
            let a: Vec<&str> = self.schema.lines().collect();
            let b: Vec<&str> = other.schema.lines().collect();
            let first = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            out.push(format!(
                "schema differs from line {}: {:?} vs {:?}",
                first + 1,
                a.get(first),
                b.get(first)
            ));
        }
        out
    }
}

fn digest_sorted(output: &str) -> String {
    let mut lines: Vec<&str> = output.lines().collect();
    lines.sort_unstable();
    let mut h = DefaultHasher::new();
    for l in &lines {
        h.write(l.as_bytes());
        h.write_u8(b'\n');
    }
    format!("{} rows, {:016x}", lines.len(), h.finish())
}

/// The PostgreSQL statements of the corpus.
const PG_CORPUS: &[&str] = &[
    "CREATE SCHEMA extra",
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN mood_d AS mood",
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE TYPE pair AS (m mood, n int)",
    "CREATE TYPE floatrange AS RANGE (subtype = float8)",
    "CREATE TYPE moodrange AS RANGE (subtype = mood)",
    "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
    "CREATE TABLE kinds (
        id int PRIMARY KEY,
        m mood, ms mood[], md mood_d, p pair, pa pair[], fr floatrange, mrg moodrange,
        ir int4range, imr int4multirange, tr tstzrange,
        o oid, rc regclass, rt regtype, rp regprocedure, rn regnamespace,
        j json, jb jsonb, tv tsvector, tq tsquery,
        pt point, ln line, sg lseg, bx box, pth path, pg polygon, cir circle,
        f4 real, f8 double precision, nu numeric, mo money,
        ts timestamp, tz timestamptz, iv interval, d date, ti time, ttz timetz,
        ip inet, cid cidr, mac macaddr, bt bit(8), vb varbit, u uuid, x xml, by bytea, b bool,
        tci text COLLATE ci, tc text COLLATE \"C\", arr int[], pd posint
    )",
    "INSERT INTO kinds SELECT g,
        (ARRAY['sad','ok','happy'])[1 + g % 3]::mood,
        ARRAY[(ARRAY['sad','ok','happy'])[1 + g % 3], 'happy']::mood[],
        'ok', ROW('happy', g)::pair, ARRAY[ROW('sad', g)::pair, ROW('ok', -g)::pair],
        floatrange(g / 7.0, g / 3.0), moodrange('sad', 'happy'),
        int4range(g, g + 10), int4multirange(int4range(1, 3), int4range(g + 5, g + 9)),
        tstzrange('2026-01-01 00:00+01', '2026-06-01 12:00-05'),
        g::oid, 'kinds'::regclass, 'mood'::regtype, 'now()'::regprocedure, 'extra'::regnamespace,
        json_build_object('k', g, 'emoji', '😀𝄞', 'nested', json_build_array(1, 2.50, null)),
        jsonb_build_object('k', g, 'z', 'ü', 'a', 1e-7),
        to_tsvector('english', 'the quick brown fox ' || g), to_tsquery('english', 'fox & quick'),
        point(g / 3.0, -g), line '{1,-1,0}', lseg '[(0,0),(1,1)]', box '(1,1),(0,0)',
        path '[(0,0),(1,1),(2,0)]', polygon '((0,0),(1,1),(1,0))', circle '<(1,1),2>',
        (g / 7.0)::real, g / 9.0, (g::numeric / 7), (g * 1.25)::numeric::money,
        '2026-03-29 02:30:00'::timestamp + g * interval '1 hour', '2026-10-25 01:30:00+02'::timestamptz + g * interval '17 minutes',
        make_interval(0, 1, 0, g, 1, 2, 3.5), '2024-02-29'::date + g, '23:59:59.999999'::time, '12:00+05:30'::timetz,
        '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', (g % 256)::bit(8), B'10101',
        md5(g::text)::uuid, xmlparse(content '<a b=\"1\">t&amp;' || g || '</a>'), decode(md5(g::text), 'hex'),
        g % 2 = 0, 'Straße ' || g, 'ÄÖÜ 𝄞 ' || g, ARRAY[g, -g, 0], 1 + g
      FROM generate_series(1, 300) g",
    // Floats at the edges: NaN, infinities, -0, subnormals, 9 and 17 significant digits.
    "INSERT INTO kinds (id, f4, f8, nu, tci) VALUES
        (1001, 'NaN', '-0', 'NaN', 'nan row'),
        (1002, '-0', 'NaN', '-0.0000000001', NULL),
        (1003, 'Infinity', '-Infinity', '1e-30', ''),
        (1004, 1.17549435e-38, 4.9406564584124654e-324, '123456789012345678901234567890.123456789', 'subnormal'),
        (1005, 0.123456789, 0.12345678901234567, 0, '😀')",
    "CREATE TABLE loose (a text, b int, c double precision)",
    "INSERT INTO loose VALUES ('dup', 1, 0.1), ('dup', 1, 0.1), (NULL, NULL, NULL), ('𝄞', -1, '-0')",
    "CREATE TABLE extra.events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, what text) PARTITION BY RANGE (at)",
    "CREATE TABLE extra.events_2025 PARTITION OF extra.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "CREATE TABLE extra.events_2026 PARTITION OF extra.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    "INSERT INTO extra.events (at, what) SELECT '2025-06-01'::date + g, 'event ' || g FROM generate_series(1, 400) g",
    "CREATE SEQUENCE extra.counter START 100 INCREMENT 7",
    "SELECT nextval('extra.counter'), nextval('extra.counter'), nextval('extra.counter')",
    "CREATE SEQUENCE extra.unused",
    "CREATE TABLE blobs (id int PRIMARY KEY, data bytea)",
    // A 12.8 MB value.
    "INSERT INTO blobs SELECT 1, decode(string_agg(md5(g::text), ''), 'hex') FROM generate_series(1, 800000) g",
    "CREATE MATERIALIZED VIEW extra.mood_counts AS SELECT m, count(*) AS n FROM kinds GROUP BY m",
    "CREATE VIEW extra.happy WITH (security_barrier) AS SELECT id, m FROM kinds WHERE m = 'happy'",
    "CREATE FUNCTION extra.stamp() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN NEW.tc := coalesce(NEW.tc, '') || '*'; RETURN NEW; END $$",
    "CREATE TRIGGER kinds_stamp BEFORE UPDATE ON kinds FOR EACH ROW EXECUTE FUNCTION extra.stamp()",
    "CREATE FUNCTION extra.twice(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 2'",
    "CREATE PROCEDURE extra.touch(n int) LANGUAGE sql AS $$ UPDATE loose SET b = n WHERE a IS NULL $$",
    "CREATE INDEX kinds_m ON kinds (m) WHERE m <> 'sad'",
    "ALTER TABLE kinds ADD CONSTRAINT kinds_id_positive CHECK (id > 0)",
];

/// Damage done to the PostgreSQL corpus after its backup: data, objects and counters.
const PG_DAMAGE: &[&str] = &[
    "DELETE FROM kinds WHERE id % 3 = 0",
    "UPDATE kinds SET m = 'sad', f8 = f8 + 1 WHERE id % 5 = 1",
    "DROP VIEW extra.happy",
    "DROP TRIGGER kinds_stamp ON kinds",
    "CREATE OR REPLACE FUNCTION extra.twice(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 3'",
    "SELECT setval('extra.counter', 5000)",
    "SELECT nextval('extra.unused')",
    "ALTER TYPE mood ADD VALUE 'ecstatic'",
    "DROP MATERIALIZED VIEW extra.mood_counts",
    "DELETE FROM extra.events WHERE at < '2025-09-01'",
    "UPDATE blobs SET data = '\\x00'",
    "INSERT INTO loose VALUES ('new', 9, 9)",
    "DROP INDEX kinds_m",
    "CREATE TABLE half_migrated (id int)",
];

/// The MariaDB statements of the corpus. `{big}` is replaced by the large row's size.
const MY_CORPUS: &[&str] = &[
    "CREATE TABLE kinds (
        id INT AUTO_INCREMENT PRIMARY KEY,
        e ENUM('sad', 'ok', 'happy', ''), s SET('x', 'y', 'z'), b BIT(10), j JSON,
        g GEOMETRY, pt POINT, f FLOAT, fd FLOAT(7,3), d DOUBLE, dc DECIMAL(30, 10),
        ti TINYINT, bu BIGINT UNSIGNED, dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL,
        da DATE, tm TIME(3), yr YEAR, vc VARCHAR(100) COLLATE utf8mb4_bin,
        vci VARCHAR(100) COLLATE utf8mb4_unicode_ci, tx TEXT, bl BLOB, vb VARBINARY(50),
        uu UUID, i6 INET6,
        gv INT AS (ti * 2) VIRTUAL, gs VARCHAR(120) AS (CONCAT(vc, '!')) STORED,
        KEY kinds_gv (gv)
    ) ENGINE=InnoDB",
    "INSERT INTO kinds (e, s, b, j, g, pt, f, fd, d, dc, ti, bu, dt, ts, da, tm, yr, vc, vci, tx, bl, vb, uu, i6)
     SELECT ELT(1 + seq % 4, 'sad', 'ok', 'happy', ''), ELT(1 + seq % 3, 'x', 'x,z', ''), seq % 1024,
        JSON_OBJECT('k', seq, 'emoji', '😀𝄞', 'n', 2.50),
        ST_GeomFromText(CONCAT('LINESTRING(0 0, ', seq, ' 1)')), POINT(seq / 3, -seq),
        seq / 7, seq / 9, seq / 11, seq / 13, CAST(seq AS SIGNED) % 128 - 64, 18446744073709551615 - seq,
        '2026-03-29 02:30:00.123456' + INTERVAL seq HOUR, '2026-10-25 01:30:00' + INTERVAL seq MINUTE,
        '2024-02-29' + INTERVAL seq DAY, SEC_TO_TIME(CAST(seq AS SIGNED) * 9999 - 1500000), 1901 + seq % 254,
        CONCAT('Straße ', seq), CONCAT('ÄÖÜ 𝄞 ', seq), REPEAT('ü', seq % 50),
        UNHEX(REPEAT(MD5(seq), 4)), UNHEX(MD5(seq)), UUID(), CONCAT('2001:db8::', HEX(seq))
     FROM seq_1_to_300",
    // Floats at the edges: -0, the smallest normal, the largest, 9 and 17 digits.
    "INSERT INTO kinds (id, f, d, tx) VALUES
        (1001, -0e0, -0e0, 'minus zero'),
        (1002, 1.17549435e-38, 2.2250738585072014e-308, NULL),
        (1003, 3.4028234e38, 1.7976931348623157e308, ''),
        (1004, 0.123456789, 0.12345678901234567, '😀'),
        (1005, 23.456789, 1e-300, 'x')",
    "CREATE TABLE loose (a TEXT, b INT, c DOUBLE) ENGINE=InnoDB",
    "INSERT INTO loose VALUES ('dup', 1, 0.1), ('dup', 1, 0.1), (NULL, NULL, NULL), ('𝄞', -1, -0e0)",
    "CREATE TABLE events (id INT NOT NULL AUTO_INCREMENT, at DATE NOT NULL, what TEXT, PRIMARY KEY (id, at))
     ENGINE=InnoDB PARTITION BY RANGE (YEAR(at)) (PARTITION p2025 VALUES LESS THAN (2026), PARTITION p2026 VALUES LESS THAN (2027))",
    "INSERT INTO events (at, what) SELECT '2025-06-01' + INTERVAL seq DAY, CONCAT('event ', seq) FROM seq_1_to_400",
    "ALTER TABLE kinds AUTO_INCREMENT = 5000",
    "CREATE SEQUENCE counter START WITH 100 INCREMENT BY 7",
    "SELECT NEXTVAL(counter), NEXTVAL(counter), NEXTVAL(counter)",
    "CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB) ENGINE=InnoDB",
    "INSERT INTO blobs VALUES (1, REPEAT(UNHEX('00FF27225C0A0D1A'), {big} DIV 8))",
    "CREATE DEFINER = CURRENT_USER SQL SECURITY DEFINER VIEW happy AS SELECT id, e FROM kinds WHERE e = 'happy' WITH CHECK OPTION",
    "CREATE DEFINER = CURRENT_USER FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "CREATE DEFINER = CURRENT_USER PROCEDURE touch(IN n INT) MODIFIES SQL DATA UPDATE loose SET b = n WHERE a IS NULL",
    "CREATE DEFINER = CURRENT_USER TRIGGER kinds_stamp BEFORE UPDATE ON kinds FOR EACH ROW SET NEW.tx = CONCAT(COALESCE(NEW.tx, ''), '*')",
    "CREATE DEFINER = CURRENT_USER EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DISABLE DO DELETE FROM loose WHERE b = 42",
    "ALTER TABLE kinds ADD CONSTRAINT kinds_ti_range CHECK (ti BETWEEN -64 AND 63)",
];

/// Damage done to the MariaDB corpus after its backup.
const MY_DAMAGE: &[&str] = &[
    "DELETE FROM kinds WHERE id % 3 = 0",
    "UPDATE kinds SET e = 'sad', f = f + 1, d = d + 1 WHERE id % 5 = 1",
    "DROP VIEW happy",
    "DROP TRIGGER kinds_stamp",
    "DROP FUNCTION twice",
    "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 3",
    "ALTER EVENT nightly ENABLE",
    "SELECT SETVAL(counter, 5000)",
    "ALTER TABLE kinds AUTO_INCREMENT = 90000",
    "ALTER TABLE kinds MODIFY e ENUM('sad', 'ok', 'happy', '', 'ecstatic')",
    "DELETE FROM events WHERE at < '2025-09-01'",
    "UPDATE blobs SET data = 'x'",
    "INSERT INTO loose VALUES ('new', 9, 9)",
    "CREATE TABLE half_migrated (id INT)",
];

impl ScratchDatabase {
    /// Creates the adversarial corpus. On MariaDB `big` is the size in bytes of the one
    /// large BLOB (rounded down to 8); PostgreSQL's large value is fixed.
    pub async fn seed_corpus(&self, big: usize) {
        match self.engine() {
            Engine::Postgres => {
                for sql in PG_CORPUS {
                    self.execute(sql).await;
                }
            }
            Engine::MariaDb => {
                for sql in MY_CORPUS {
                    self.execute(&sql.replace("{big}", &big.to_string())).await;
                }
            }
        }
    }

    /// Damages the corpus: rows deleted and changed, objects dropped and redefined,
    /// sequences and counters moved, a type changed, a table added.
    pub async fn damage_corpus(&self) {
        let statements = match self.engine() {
            Engine::Postgres => PG_DAMAGE,
            Engine::MariaDb => MY_DAMAGE,
        };
        for sql in statements {
            self.execute(sql).await;
        }
    }

    /// Runs the engine's own client with `args` and the password in its environment.
    fn client(&self, program: &str, args: &[&str]) -> String {
        let (url, password) = self.credentials();
        let rest = url.split_once("://").expect("a scheme").1;
        let (user, host_path) = rest.split_once('@').expect("a user");
        let (host_port, _) = host_path.split_once('/').expect("a database");
        let (host, port) = host_port.rsplit_once(':').expect("a port");
        let mut cmd = Command::new(program);
        match self.engine() {
            Engine::Postgres => {
                cmd.args(["-h", host, "-p", port, "-U", user])
                    .env("PGPASSWORD", &password)
                    .env(
                        "PGOPTIONS",
                        "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C",
                    );
            }
            Engine::MariaDb => {
                cmd.args([
                    "--protocol=tcp",
                    "-h",
                    host,
                    "-P",
                    port,
                    "-u",
                    user,
                    "--default-character-set=utf8mb4",
                ])
                .env("MYSQL_PWD", &password);
            }
        }
        cmd.args(args);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the engine's own client sees: every table's rows (sorted, digested), every
    /// sequence's value, and the schema-only dump.
    pub fn independent_state(&self) -> IndependentState {
        self.observe(true)
    }

    /// [`ScratchDatabase::independent_state`]'s values alone (the data, without the
    /// schema, which a dump tool may refuse to print while a view is broken).
    pub fn independent_values(&self) -> BTreeMap<String, String> {
        self.observe(false).values
    }

    fn observe(&self, with_schema: bool) -> IndependentState {
        let mut values = BTreeMap::new();
        match self.engine() {
            Engine::Postgres => {
                let psql = |sql: &str| {
                    self.client(
                        "psql",
                        &[
                            "-X",
                            "-At",
                            "-v",
                            "ON_ERROR_STOP=1",
                            "-d",
                            self.name(),
                            "-c",
                            sql,
                        ],
                    )
                };
                let tables = psql(
                    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
                );
                for t in tables.lines() {
                    let rows = psql(&format!("COPY (SELECT t::text FROM {t} t) TO STDOUT"));
                    values.insert(format!("table {t}"), digest_sorted(&rows));
                }
                let sequences = psql(
                    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
                );
                for s in sequences.lines() {
                    let v = psql(&format!("SELECT last_value || ' ' || is_called FROM {s}"));
                    values.insert(format!("sequence {s}"), v.trim().to_owned());
                }
                if !with_schema {
                    return IndependentState {
                        values,
                        schema: String::new(),
                    };
                }
                // pg_dump fences its output with a random `\restrict` key: not schema.
                let schema = self
                    .client(
                        "pg_dump",
                        &[
                            "--schema-only",
                            "--no-owner",
                            "--no-privileges",
                            "--dbname",
                            self.name(),
                        ],
                    )
                    .lines()
                    .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                    .collect::<Vec<_>>()
                    .join("\n");
                IndependentState { values, schema }
            }
            Engine::MariaDb => {
                let mariadb = |sql: &str| {
                    self.client(
                        "mariadb",
                        &["--batch", "--skip-column-names", "-e", sql, self.name()],
                    )
                };
                let tables = mariadb(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
                );
                for t in tables.lines() {
                    // FLOAT prints 6 digits and binary bytes may not be text: exact forms.
                    let columns = mariadb(&format!(
                        "SELECT CASE WHEN DATA_TYPE = 'float' THEN CONCAT('CAST(`', COLUMN_NAME, '` AS DOUBLE)')
                                     WHEN DATA_TYPE IN ('binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob', 'bit', 'geometry', 'point', 'linestring', 'polygon')
                                       THEN CONCAT('HEX(`', COLUMN_NAME, '`)')
                                     ELSE CONCAT('`', COLUMN_NAME, '`') END
                         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}' ORDER BY ORDINAL_POSITION"
                    ));
                    let list: Vec<&str> = columns.lines().collect();
                    let rows = mariadb(&format!("SELECT {} FROM `{t}`", list.join(", ")));
                    values.insert(format!("table {t}"), digest_sorted(&rows));
                }
                let sequences = mariadb(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE'",
                );
                for s in sequences.lines() {
                    let v = mariadb(&format!("SELECT next_not_cached_value FROM `{s}`"));
                    values.insert(format!("sequence {s}"), v.trim().to_owned());
                }
                if !with_schema {
                    return IndependentState {
                        values,
                        schema: String::new(),
                    };
                }
                let schema = self.client(
                    "mariadb-dump",
                    &[
                        "--no-data",
                        "--routines",
                        "--triggers",
                        "--events",
                        "--skip-dump-date",
                        "--skip-comments",
                        self.name(),
                    ],
                );
                IndependentState { values, schema }
            }
        }
    }
}
