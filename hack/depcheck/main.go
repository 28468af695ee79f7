// Command depcheck enforces the dependency rules in rules.txt: a package of
// this module, and everything it imports, must not import what its rule
// forbids. It prints each violation with the chain of imports that brings
// it in, and fails; a rule that names a package of this module that no
// longer exists fails too, so that renames cannot silently void a rule.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

type rule struct {
	line      int
	pkg       string
	forbidden []string
}

func main() {
	rulesFile := flag.String("rules", "hack/depcheck/rules.txt", "the rules")
	flag.Parse()
	if err := run(*rulesFile, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "depcheck:", err)
		os.Exit(1)
	}
}

func run(rulesFile string, out io.Writer) error {
	module, err := goList("-m")
	if err != nil {
		return err
	}
	module = strings.TrimSpace(module)
	rules, err := readRules(rulesFile, module)
	if err != nil {
		return err
	}
	all, err := goList("./...")
	if err != nil {
		return err
	}
	ours := strings.Fields(all)
	var bad []string
	for _, r := range rules {
		for _, f := range append([]string{r.pkg}, r.forbidden...) {
			if strings.HasPrefix(f, module+"/") && !hasPrefix(ours, f) {
				bad = append(bad, fmt.Sprintf("%s:%d: %s: no such package in this module (renamed? update the rule)", rulesFile, r.line, f))
			}
		}
		deps, err := listDeps(r.pkg)
		if err != nil {
			return err
		}
		for path, p := range deps {
			for _, imp := range p.Imports {
				for _, f := range r.forbidden {
					if imp == f || strings.HasPrefix(imp, strings.TrimSuffix(f, "/")+"/") {
						bad = append(bad, fmt.Sprintf("%s:%d: %s must not import %s: %s",
							rulesFile, r.line, r.pkg, f, strings.Join(append(chain(deps, r.pkg, path), imp), " → ")))
					}
				}
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return errors.New("dependency rules broken:\n  " + strings.Join(bad, "\n  "))
	}
	fmt.Fprintf(out, "depcheck: %d rules hold\n", len(rules))
	return nil
}

func hasPrefix(pkgs []string, prefix string) bool {
	for _, p := range pkgs {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

func readRules(file, module string) ([]rule, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rules []rule
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s:%d: want a package and what it must not import", file, n)
		}
		for i, f := range fields {
			if strings.HasPrefix(f, "./") {
				fields[i] = module + "/" + strings.TrimPrefix(f, "./")
			} else if i == 0 {
				return nil, fmt.Errorf("%s:%d: the package must be one of this module (./...)", file, n)
			}
		}
		rules = append(rules, rule{line: n, pkg: fields[0], forbidden: fields[1:]})
	}
	return rules, sc.Err()
}

// listDeps returns the non-standard packages root depends on, root included.
func listDeps(root string) (map[string]*pkg, error) {
	cmd := exec.Command(goCmd(), "list", "-deps", "-json=ImportPath,Imports,Standard", root)
	cmd.Env = append(os.Environ(), "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %v\n%s", root, err, stderr.String())
	}
	deps := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		p := &pkg{}
		if err := dec.Decode(p); err != nil {
			return nil, err
		}
		if !p.Standard {
			deps[p.ImportPath] = p
		}
	}
	return deps, nil
}

// chain is a shortest import chain from root to target.
func chain(deps map[string]*pkg, root, target string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == target {
			var out []string
			for p := target; p != ""; p = prev[p] {
				out = append([]string{p}, out...)
			}
			return out
		}
		if p := deps[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, seen := prev[imp]; !seen && deps[imp] != nil {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return []string{root, "…", target}
}

func goList(args ...string) (string, error) {
	cmd := exec.Command(goCmd(), append([]string{"list"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(b), nil
}

// goCmd is $GO (as make passes it), else go.
func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
