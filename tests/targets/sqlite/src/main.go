// sqlite: a Go program using a C library nobody here wrote (SQLite through
// Debian's github.com/mattn/go-sqlite3, built in GOPATH mode; see
// tests/targets/sqlite/build.sh), for memdrift's C memory tracing.
//
//	sqlite -truth FILE -db PATH [-rows N]
//
// At start it runs one warm-up cycle (SQLite's process-wide state, e.g.
// sqlite3_initialize's mutexes and VFS list, lives until exit), writes FILE
// (seq 0) and waits. Each SIGUSR1 runs half a cycle and rewrites FILE
// (seq + 1), then stays quiet: odd seq = PATH opened, a table created, N
// rows inserted with a prepared statement in a transaction and queried back,
// the database still open ("phase":"open"); even seq = the database closed
// ("phase":"closed"). After a close every handle is closed, so the C memory
// SQLite holds for it is back to the warm state.
package main

import (
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	_ "github.com/mattn/go-sqlite3"
)

type Truth struct {
	Pid       int    `json:"pid"`
	GoVersion string `json:"go_version"`
	Seq       int    `json:"seq"`
	Rows      int    `json:"rows"`
	Sum       int64  `json:"sum"`
	Open      int    `json:"open_connections"`
	Phase     string `json:"phase"`
}

// fill opens path and runs the workload, leaving the database open.
func fill(path string, rows int) (*sql.DB, int64, int, error) {
	os.Remove(path)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		return nil, 0, 0, err
	}
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, v INTEGER)"); err != nil {
		db.Close()
		return nil, 0, 0, err
	}
	tx, err := db.Begin()
	if err != nil {
		db.Close()
		return nil, 0, 0, err
	}
	st, err := tx.Prepare("INSERT INTO t (name, v) VALUES (?, ?)")
	if err != nil {
		tx.Rollback()
		db.Close()
		return nil, 0, 0, err
	}
	for i := 0; i < rows; i++ {
		if _, err := st.Exec(fmt.Sprintf("row-%d-%s", i, "payload"), i); err != nil {
			st.Close()
			tx.Rollback()
			db.Close()
			return nil, 0, 0, err
		}
	}
	st.Close()
	if err := tx.Commit(); err != nil {
		db.Close()
		return nil, 0, 0, err
	}
	var sum int64
	r, err := db.Query("SELECT v, name FROM t WHERE v % 3 = 0 ORDER BY name")
	if err != nil {
		db.Close()
		return nil, 0, 0, err
	}
	for r.Next() {
		var v int64
		var name string
		if err := r.Scan(&v, &name); err != nil {
			r.Close()
			db.Close()
			return nil, 0, 0, err
		}
		sum += v
	}
	r.Close()
	return db, sum, db.Stats().OpenConnections, nil
}

// closeDB closes every handle: database/sql closes the driver's
// connections in Close; go-sqlite3's finalizers only back up forgotten ones.
func closeDB(db *sql.DB, path string) error {
	err := db.Close()
	os.Remove(path)
	runtime.GC()
	return err
}

func writeTruth(path string, t *Truth) {
	b, _ := json.Marshal(t)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
		err = os.Rename(tmp, path)
	}
}

func main() {
	truth := flag.String("truth", "", "write the truth JSON to this file")
	dbPath := flag.String("db", "/tmp/memdrift-sqlite.db", "database file (removed after each cycle)")
	rows := flag.Int("rows", 5000, "rows inserted per cycle")
	flag.Parse()

	t := &Truth{Pid: os.Getpid(), GoVersion: runtime.Version(), Rows: *rows}
	db, _, _, err := fill(*dbPath, 10)
	if err == nil {
		err = closeDB(db, *dbPath)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqlite:", err)
		os.Exit(1)
	}
	db = nil
	t.Phase = "closed"
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1)
	if *truth != "" {
		writeTruth(*truth, t)
	}
	for range sigs {
		if db == nil {
			db, t.Sum, t.Open, err = fill(*dbPath, *rows)
			t.Phase = "open"
		} else {
			err = closeDB(db, *dbPath)
			db = nil
			t.Phase = "closed"
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sqlite:", err)
			os.Exit(1)
		}
		t.Seq++
		if *truth != "" {
			writeTruth(*truth, t)
		}
	}
}
