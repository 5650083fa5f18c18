package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// A command's settings come from four places; for each flag the first
// that sets it wins:
//
//  1. the command line;
//  2. the environment: STEAD_ and the flag's name in capitals with
//     underscores (STEAD_DATA_DIR for --data-dir), except STEAD_ADDR for
//     --server and STEAD_TOKEN for --token;
//  3. the YAML file of --config, whose keys are flag names (data-dir: ...);
//  4. the flag's default.
//
// docs/configuration.md says why in this order.

// configFlag names the flag that points at the YAML file.
const configFlag = "config"

// noConfigAnnotation marks a flag that only the command line may set,
// such as a confirmation: neither a variable nor a file answers it.
const noConfigAnnotation = "stead.io/command-line-only"

// envNames are the variables of flags not called STEAD_<FLAG>.
var envNames = map[string]string{
	"server": "STEAD_ADDR",
	"token":  "STEAD_TOKEN",
}

// envName returns the environment variable that sets flag.
func envName(flag string) string {
	if v, ok := envNames[flag]; ok {
		return v
	}
	return "STEAD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// addConfig gives root the --config flag and makes every command below it
// take its settings from the environment (read through lookupEnv) and
// that file before it runs.
func addConfig(root *cobra.Command, lookupEnv func(string) (string, bool)) {
	root.PersistentFlags().String(configFlag, "", "YAML file of settings, one key per flag (data-dir: /var/lib/stead); flags and STEAD_* variables override it")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return loadConfig(cmd, lookupEnv)
	}
}

// configurable reports whether a variable or the config file may set f.
func configurable(f *pflag.Flag) bool {
	if f.Name == configFlag || f.Name == "help" {
		return false
	}
	_, only := f.Annotations[noConfigAnnotation]
	return !only
}

// loadConfig sets every flag of cmd that the command line did not set
// from its environment variable or, failing that, from the --config file.
// It reports every problem at once: a variable or key whose value the
// flag refuses, and a key that is not a setting of cmd.
func loadConfig(cmd *cobra.Command, lookupEnv func(string) (string, bool)) error {
	if isBuiltin(cmd) {
		return nil
	}
	fs := cmd.Flags()
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || !configurable(f) {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (--%s): %w", name, v, f.Name, badValue(f, err)))
		}
	})

	path := ""
	if f := fs.Lookup(configFlag); f != nil {
		path = f.Value.String()
	}
	if path != "" {
		settings, err := readConfigFile(path)
		if err != nil {
			return err
		}
		for _, s := range settings {
			if err := applySetting(cmd, s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// isBuiltin reports whether cmd is one of cobra's own commands (help,
// completion), which take no settings.
func isBuiltin(cmd *cobra.Command) bool {
	top := cmd
	for top.HasParent() && top.Parent().HasParent() {
		top = top.Parent()
	}
	switch top.Name() {
	case "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		return top.HasParent()
	}
	return false
}

// setting is one key of a config file with its value as flag arguments:
// one for a single value, one per item for a list or a map (KEY=VALUE).
type setting struct {
	key    string
	values []string
	// list is set when the file gave a list or a map.
	list bool
}

// readConfigFile reads the YAML file at path: a map from flag names to
// values, lists or maps of strings. The settings come back sorted by key.
func readConfigFile(path string) ([]setting, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %s", path, strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: want one setting per line, such as \"data-dir: /var/lib/stead\": %w", path, err)
	}
	var out []setting
	var errs []error
	for key, v := range raw {
		s, err := toSetting(key, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		if s.values != nil || s.list {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b setting) int { return strings.Compare(a.key, b.key) })
	return out, errors.Join(errs...)
}

// toSetting turns one decoded YAML value into flag arguments. A null
// value (a key with nothing after it) sets nothing.
func toSetting(key string, v any) (setting, error) {
	s := setting{key: key}
	switch v := v.(type) {
	case nil:
	case []any:
		s.list, s.values = true, []string{}
		for i, item := range v {
			str, ok := scalar(item)
			if !ok {
				return s, fmt.Errorf("%s: item %d is not a single value", key, i+1)
			}
			s.values = append(s.values, str)
		}
	case map[string]any:
		s.list, s.values = true, []string{}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			str, ok := scalar(v[k])
			if !ok {
				return s, fmt.Errorf("%s: %s is not a single value", key, k)
			}
			s.values = append(s.values, k+"="+str)
		}
	default:
		str, ok := scalar(v)
		if !ok {
			return s, fmt.Errorf("%s: not a value", key)
		}
		s.values = []string{str}
	}
	return s, nil
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	case nil:
		return "", true
	}
	return "", false
}

// applySetting sets the flag s names, unless the command line or the
// environment already did.
func applySetting(cmd *cobra.Command, s setting) error {
	fs := cmd.Flags()
	f := fs.Lookup(s.key)
	if f == nil {
		return unknownKey(cmd, s.key)
	}
	if !configurable(f) {
		return fmt.Errorf("%s cannot be set in a config file; give --%s on the command line", s.key, s.key)
	}
	multi := isMulti(f)
	if s.list && !multi {
		return fmt.Errorf("%s: want a single value (%s), not a list", s.key, expectation(f))
	}
	if f.Changed {
		return nil
	}
	if len(s.values) == 0 {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			f.Changed = true
			return sv.Replace(nil)
		}
		return nil
	}
	for _, v := range s.values {
		arg := v
		if s.list && csvFlag(f) {
			arg = csvQuote(v)
		}
		if err := fs.Set(f.Name, arg); err != nil {
			return fmt.Errorf("%s: %w", s.key, badValue(f, err))
		}
	}
	return nil
}

// isMulti reports whether f takes several values: a list or a map.
func isMulti(f *pflag.Flag) bool {
	if _, ok := f.Value.(pflag.SliceValue); ok {
		return true
	}
	return strings.HasPrefix(f.Value.Type(), "stringTo")
}

// csvFlag reports whether f parses each argument as comma-separated
// values, so that an item holding a comma must be quoted.
func csvFlag(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasPrefix(t, "stringTo")
}

func csvQuote(s string) string {
	if !strings.ContainsAny(s, ",\"\n") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// badValue says what f wants, with the flag's own reason.
func badValue(f *pflag.Flag, err error) error {
	var invalid *pflag.InvalidValueError
	if errors.As(err, &invalid) {
		err = invalid.Unwrap()
	}
	var num *strconv.NumError
	if errors.As(err, &num) {
		err = num.Err
	}
	return fmt.Errorf("want %s: %w", expectation(f), err)
}

// expectation describes the values f takes.
func expectation(f *pflag.Flag) string {
	switch t := f.Value.Type(); t {
	case "bool":
		return "true or false"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "count":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	case "duration":
		return "a duration such as 30s, 5m or 1h30m"
	case "stringSlice", "stringArray":
		return "a list of strings"
	case "stringToString":
		return "a map of KEY: VALUE"
	case "string":
		return "a string"
	default:
		return "a value of type " + t
	}
}

// unknownKey explains a key that is not a setting of cmd: another
// command's setting (the file of another role), a near miss, or nothing.
func unknownKey(cmd *cobra.Command, key string) error {
	var owners []string
	walk(cmd.Root(), func(c *cobra.Command) {
		if c != cmd && c.Runnable() && c.Flags().Lookup(key) != nil {
			owners = append(owners, "'"+c.CommandPath()+"'")
		}
	})
	if len(owners) > 0 {
		return fmt.Errorf("%s is a setting of %s, not of '%s': is this the file of another command?",
			key, strings.Join(owners, ", "), cmd.CommandPath())
	}
	var near []string
	norm := normalizeKey(key)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if configurable(f) && !f.Hidden && (f.Name == norm || editDistance(norm, f.Name) <= 2) {
			near = append(near, f.Name)
		}
	})
	if len(near) > 0 {
		return fmt.Errorf("unknown key %q: did you mean %s?", key, strings.Join(near, " or "))
	}
	return fmt.Errorf("unknown key %q: the keys are the flags of '%s --help', without the dashes", key, cmd.CommandPath())
}

// walk calls fn for c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// normalizeKey turns the usual misspellings of a flag name (--data-dir,
// data_dir, dataDir) into the flag name.
func normalizeKey(key string) string {
	key = strings.TrimLeft(key, "-")
	var b strings.Builder
	for i, r := range key {
		switch {
		case r == '_':
			b.WriteByte('-')
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r + ('a' - 'A'))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
