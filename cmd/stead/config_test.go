package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// settings are the flag values the commands of configTree saw.
type settings struct {
	server          string
	dataDir         string
	agentDataDir    string
	bootstrapExpect int
	retryJoin       bool
	join            []string
	labels          []string
	annotations     map[string]string
	interval        time.Duration
	confirm         bool
}

// configTree is a root with a server and an agent command whose flags
// have every type the real commands use; running one records its
// settings.
func configTree(env map[string]string) (*cobra.Command, *settings) {
	got := &settings{}
	root := &cobra.Command{Use: "stead", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&got.server, "server", "127.0.0.1:7470", "")
	addConfig(root, func(k string) (string, bool) { v, ok := env[k]; return v, ok })

	server := &cobra.Command{Use: "server", RunE: func(*cobra.Command, []string) error { return nil }}
	f := server.Flags()
	f.StringVar(&got.dataDir, "data-dir", "/var/lib/stead", "")
	f.IntVar(&got.bootstrapExpect, "bootstrap-expect", 0, "")
	f.BoolVar(&got.retryJoin, "retry-join", false, "")
	f.StringSliceVar(&got.join, "join", nil, "")
	f.DurationVar(&got.interval, "interval", time.Second, "")
	f.BoolVar(&got.confirm, "confirm", false, "")
	f.SetAnnotation("confirm", noConfigAnnotation, []string{"true"})

	agent := &cobra.Command{Use: "agent", RunE: func(*cobra.Command, []string) error { return nil }}
	f = agent.Flags()
	f.StringVar(&got.agentDataDir, "data-dir", "/var/lib/stead/agent", "")
	f.StringArrayVar(&got.labels, "node-label", nil, "")
	f.StringToStringVar(&got.annotations, "node-annotation", nil, "")

	root.AddCommand(server, agent)
	return root, got
}

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigPrecedence(t *testing.T) {
	const serverFile = `
server: 10.0.0.9:7470
data-dir: /srv/file
bootstrap-expect: 3
retry-join: true
join: [10.0.0.2:7470, "10.0.0.3:7470"]
interval: 5m
`
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want settings
	}{
		{
			name: "defaults",
			args: []string{"server"},
			want: settings{server: "127.0.0.1:7470", dataDir: "/var/lib/stead", interval: time.Second},
		},
		{
			name: "file",
			file: serverFile,
			args: []string{"server"},
			want: settings{server: "10.0.0.9:7470", dataDir: "/srv/file", bootstrapExpect: 3, retryJoin: true,
				join: []string{"10.0.0.2:7470", "10.0.0.3:7470"}, interval: 5 * time.Minute},
		},
		{
			name: "environment over file",
			file: serverFile,
			env:  map[string]string{"STEAD_DATA_DIR": "/srv/env", "STEAD_BOOTSTRAP_EXPECT": "5", "STEAD_JOIN": "a:1,b:2", "STEAD_ADDR": "10.0.0.8:7470"},
			args: []string{"server"},
			want: settings{server: "10.0.0.8:7470", dataDir: "/srv/env", bootstrapExpect: 5, retryJoin: true,
				join: []string{"a:1", "b:2"}, interval: 5 * time.Minute},
		},
		{
			name: "flags over environment and file",
			file: serverFile,
			env:  map[string]string{"STEAD_DATA_DIR": "/srv/env", "STEAD_RETRY_JOIN": "true"},
			args: []string{"--server", "10.0.0.7:7470", "server", "--data-dir", "/srv/flag", "--retry-join=false", "--join", "c:3"},
			want: settings{server: "10.0.0.7:7470", dataDir: "/srv/flag", bootstrapExpect: 3, retryJoin: false,
				join: []string{"c:3"}, interval: 5 * time.Minute},
		},
		{
			name: "empty variable is unset",
			file: serverFile,
			env:  map[string]string{"STEAD_DATA_DIR": ""},
			args: []string{"server"},
			want: settings{server: "10.0.0.9:7470", dataDir: "/srv/file", bootstrapExpect: 3, retryJoin: true,
				join: []string{"10.0.0.2:7470", "10.0.0.3:7470"}, interval: 5 * time.Minute},
		},
		{
			name: "list item with a comma stays one item",
			file: "join: [\"a,b\", c]\n",
			args: []string{"server"},
			want: settings{server: "127.0.0.1:7470", dataDir: "/var/lib/stead", join: []string{"a,b", "c"}, interval: time.Second},
		},
		{
			name: "single value for a list",
			file: "join: a:1,b:2\n",
			args: []string{"server"},
			want: settings{server: "127.0.0.1:7470", dataDir: "/var/lib/stead", join: []string{"a:1", "b:2"}, interval: time.Second},
		},
		{
			name: "labels as a list",
			file: "node-label:\n  - zone=a\n  - disk=ssd\n",
			args: []string{"agent"},
			want: settings{server: "127.0.0.1:7470", agentDataDir: "/var/lib/stead/agent", labels: []string{"zone=a", "disk=ssd"}},
		},
		{
			name: "labels as a map",
			file: "node-label: {zone: a, disk: ssd}\nnode-annotation: {owner: ops, tier: \"1\"}\n",
			args: []string{"agent"},
			want: settings{server: "127.0.0.1:7470", agentDataDir: "/var/lib/stead/agent", labels: []string{"disk=ssd", "zone=a"},
				annotations: map[string]string{"owner": "ops", "tier": "1"}},
		},
		{
			name: "flag over a map",
			file: "node-label: {zone: a}\n",
			env:  map[string]string{"STEAD_NODE_LABEL": "zone=b"},
			args: []string{"agent", "--node-label", "zone=c"},
			want: settings{server: "127.0.0.1:7470", agentDataDir: "/var/lib/stead/agent", labels: []string{"zone=c"}},
		},
		{
			name: "key without a value",
			file: "data-dir:\nbootstrap-expect: 1\n",
			args: []string{"server"},
			want: settings{server: "127.0.0.1:7470", dataDir: "/var/lib/stead", bootstrapExpect: 1, interval: time.Second},
		},
		{
			name: "command-line-only flag ignores its variable",
			env:  map[string]string{"STEAD_CONFIRM": "true"},
			args: []string{"server"},
			want: settings{server: "127.0.0.1:7470", dataDir: "/var/lib/stead", interval: time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, got := configTree(tt.env)
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, "stead.yaml", tt.file))
			}
			root.SetArgs(args)
			if err := root.Execute(); err != nil {
				t.Fatalf("execute %v: %v", args, err)
			}
			// Both commands' flags set their defaults; the cases name
			// only those of the command they run.
			if tt.want.agentDataDir == "" {
				tt.want.agentDataDir = "/var/lib/stead/agent"
			}
			if tt.want.dataDir == "" {
				tt.want.dataDir = "/var/lib/stead"
			}
			if tt.want.interval == 0 {
				tt.want.interval = time.Second
			}
			if fmt.Sprintf("%#v", *got) != fmt.Sprintf("%#v", tt.want) {
				t.Errorf("settings\n got %#v\nwant %#v", *got, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		// want are the lines of the error; {file} stands for the file.
		want []string
	}{
		{
			name: "misspelled key",
			file: "data_dir: /x\n",
			args: []string{"server"},
			want: []string{`{file}: unknown key "data_dir": did you mean data-dir?`},
		},
		{
			name: "near miss",
			file: "bootstrap-expected: 3\n",
			args: []string{"server"},
			want: []string{`{file}: unknown key "bootstrap-expected": did you mean bootstrap-expect?`},
		},
		{
			name: "no such key",
			file: "colour: blue\n",
			args: []string{"server"},
			want: []string{`{file}: unknown key "colour": the keys are the flags of 'stead server --help', without the dashes`},
		},
		{
			name: "another command's key",
			file: "data-dir: /x\nbootstrap-expect: 3\n",
			args: []string{"agent"},
			want: []string{`{file}: bootstrap-expect is a setting of 'stead server', not of 'stead agent': is this the file of another command?`},
		},
		{
			name: "bad value",
			file: "bootstrap-expect: three\n",
			args: []string{"server"},
			want: []string{`{file}: bootstrap-expect: want a whole number: invalid syntax`},
		},
		{
			name: "bad duration",
			file: "interval: 5 minutes\n",
			args: []string{"server"},
			want: []string{`{file}: interval: want a duration such as 30s, 5m or 1h30m: time: unknown unit " minutes" in duration "5 minutes"`},
		},
		{
			name: "list for a single value",
			file: "data-dir: [/a, /b]\n",
			args: []string{"server"},
			want: []string{`{file}: data-dir: want a single value (a string), not a list`},
		},
		{
			name: "nested list",
			file: "join: [[a]]\n",
			args: []string{"server"},
			want: []string{`{file}: join: item 1 is not a single value`},
		},
		{
			name: "bad variable",
			env:  map[string]string{"STEAD_RETRY_JOIN": "maybe"},
			args: []string{"server"},
			want: []string{`STEAD_RETRY_JOIN="maybe" (--retry-join): want true or false: invalid syntax`},
		},
		{
			name: "command-line-only flag in a file",
			file: "confirm: true\n",
			args: []string{"server"},
			want: []string{`{file}: confirm cannot be set in a config file; give --confirm on the command line`},
		},
		{
			name: "config in a file",
			file: "config: /etc/other.yaml\n",
			args: []string{"server"},
			want: []string{`{file}: config cannot be set in a config file; give --config on the command line`},
		},
		{
			name: "a bad value overridden on the command line is still a bad key",
			file: "data-dir: [/a]\n",
			args: []string{"server", "--data-dir", "/b"},
			want: []string{`{file}: data-dir: want a single value (a string), not a list`},
		},
		{
			name: "every problem at once",
			file: "bootstrap-expect: x\nnode-label: [a=b]\nretry_join: true\n",
			env:  map[string]string{"STEAD_INTERVAL": "soon"},
			args: []string{"server"},
			want: []string{
				`STEAD_INTERVAL="soon" (--interval): want a duration such as 30s, 5m or 1h30m: time: invalid duration "soon"`,
				`{file}: bootstrap-expect: want a whole number: invalid syntax`,
				`{file}: node-label is a setting of 'stead agent', not of 'stead server': is this the file of another command?`,
				`{file}: unknown key "retry_join": did you mean retry-join?`,
			},
		},
		{
			name: "not a map",
			file: "- data-dir\n",
			args: []string{"server"},
			want: []string{`{file}: want one setting per line, such as "data-dir: /var/lib/stead": json: cannot unmarshal array into Go value of type map[string]interface {}`},
		},
		{
			name: "duplicate key",
			file: "data-dir: /a\ndata-dir: /b\n",
			args: []string{"server"},
			want: []string{`{file}: not valid YAML: yaml: unmarshal errors:`, `  line 2: key "data-dir" already set in map`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, _ := configTree(tt.env)
			args := tt.args
			file := ""
			if tt.file != "" {
				file = writeFile(t, "stead.yaml", tt.file)
				args = append(args, "--config", file)
			}
			root.SetArgs(args)
			err := root.Execute()
			if err == nil {
				t.Fatalf("execute %v: no error", args)
			}
			want := strings.ReplaceAll(strings.Join(tt.want, "\n"), "{file}", file)
			if err.Error() != want {
				t.Errorf("error\n got %s\nwant %s", err, want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		root, _ := configTree(nil)
		root.SetArgs([]string{"server", "--config", "/nonexistent/stead.yaml"})
		if err := root.Execute(); err == nil || err.Error() != "--config: open /nonexistent/stead.yaml: no such file or directory" {
			t.Errorf("error %v", err)
		}
	})
}

// TestDeployConfigsLoad loads the example files of deploy/config into the
// real commands and checks a few of their settings.
func TestDeployConfigsLoad(t *testing.T) {
	for _, k := range []string{"STEAD_ADDR", "STEAD_TOKEN", "STEAD_DATA_DIR", "STEAD_NODE_ID", "STEAD_JOIN", "STEAD_SERVERS", "STEAD_NODE_LABEL"} {
		t.Setenv(k, "")
	}
	tests := []struct {
		role string
		file string
		want map[string]string
	}{
		{"server", "server.yaml", map[string]string{
			"node-id": "s1", "data-dir": "/var/lib/stead", "bootstrap-expect": "3",
			"join": "[10.0.0.2:7470,10.0.0.3:7470]", "retry-join": "true", "log-json": "false",
		}},
		{"agent", "agent.yaml", map[string]string{
			"node-name": "n7", "data-dir": "/var/lib/stead-agent", "servers": "[10.0.0.1:7470,10.0.0.2:7470,10.0.0.3:7470]",
			"node-label": "[topology.kubernetes.io/zone=rack-2,disk=ssd]", "agent-addr": "10.0.0.17:7472",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			root := newRootCmd()
			cmd, _, err := root.Find([]string{tt.role})
			if err != nil || cmd.Name() != tt.role {
				t.Skipf("no 'stead %s' command", tt.role)
			}
			ran := false
			cmd.RunE = func(*cobra.Command, []string) error { ran = true; return nil }
			root.SetArgs([]string{tt.role, "--config", filepath.Join("../../deploy/config", tt.file)})
			if err := root.Execute(); err != nil {
				t.Fatalf("load %s: %v", tt.file, err)
			}
			if !ran {
				t.Fatal("the command did not run")
			}
			for _, name := range slices.Sorted(maps.Keys(tt.want)) {
				if got := cmd.Flags().Lookup(name).Value.String(); got != tt.want[name] {
					t.Errorf("--%s = %s, want %s", name, got, tt.want[name])
				}
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the generated tables of docs/configuration.md")

// TestConfigReference checks that the tables of docs/configuration.md
// list the settings the commands have, and rewrites them with -update.
func TestConfigReference(t *testing.T) {
	const path = "../../docs/configuration.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	root := newRootCmd()
	host, _ := os.Hostname()
	for _, name := range []string{"", "server", "agent", "dev"} {
		cmd, fs := root, root.PersistentFlags()
		if name != "" {
			c, _, err := root.Find([]string{name})
			if err != nil || c.Name() != name {
				t.Errorf("no command %q", name)
				continue
			}
			cmd, fs = c, c.Flags()
		}
		begin := "<!-- generated: " + cmd.CommandPath() + " -->\n"
		const end = "<!-- end generated -->"
		i := strings.Index(doc, begin)
		j := strings.Index(doc[i+len(begin):], end)
		if i < 0 || j < 0 {
			t.Errorf("%s has no %q ... %q section", path, strings.TrimSpace(begin), end)
			continue
		}
		j += i + len(begin)
		want := referenceTable(fs, host)
		if got := doc[i+len(begin) : j]; got != want {
			if !*update {
				t.Errorf("the settings of '%s' in %s are out of date: run go test ./cmd/stead -run TestConfigReference -update\n got:\n%s\nwant:\n%s",
					cmd.CommandPath(), path, got, want)
			}
			doc = doc[:i+len(begin)] + want + doc[j:]
		}
	}
	if *update && doc != string(data) {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// referenceTable is the Markdown table of the settings in fs.
func referenceTable(fs *pflag.FlagSet, host string) string {
	var b strings.Builder
	b.WriteString("| Key | Variable | Value | Default | Meaning |\n|---|---|---|---|---|\n")
	fs.VisitAll(func(f *pflag.Flag) {
		if !configurable(f) || f.Hidden {
			return
		}
		def := f.DefValue
		switch {
		case def == host && host != "":
			def = "the host name"
		case def == "" || def == "[]" || def == "0":
			def = ""
		default:
			def = "`" + def + "`"
		}
		kind := expectation(f)
		if isMulti(f) {
			kind = "a list"
			if strings.Contains(f.Usage, "KEY=VALUE") {
				kind = "a list of KEY=VALUE, or a map"
			}
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s |\n", f.Name, envName(f.Name), kind, def, strings.ReplaceAll(f.Usage, "|", `\|`))
	})
	return b.String()
}
