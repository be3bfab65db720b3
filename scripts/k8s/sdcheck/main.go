// Command sdcheck runs Prometheus' own Kubernetes service discovery and relabelling once against
// an API server and prints the targets a scrape job yields, one JSON object of labels per line —
// what promtool's `check service-discovery` does, built with the Kubernetes discovery only
// (Debian's promtool has none, and the full promtool pulls in every cloud's SDK).
//
//	sdcheck JOB.yaml [SECONDS]
//
// JOB.yaml is one scrape config: job_name, scheme, metrics_path, kubernetes_sd_configs (one) and
// relabel_configs. The labels are built as Prometheus' scrape.PopulateLabels builds them: the
// discovered labels, job/scheme/metrics_path where unset, the relabel rules, the __meta_* labels
// dropped, instance defaulting to __address__. A dropped target prints nothing.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"
)

type job struct {
	JobName     string                 `yaml:"job_name"`
	Scheme      string                 `yaml:"scheme"`
	MetricsPath string                 `yaml:"metrics_path"`
	Discovery   []*kubernetes.SDConfig `yaml:"kubernetes_sd_configs"`
	Relabel     []*relabel.Config      `yaml:"relabel_configs"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sdcheck:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: sdcheck JOB.yaml [SECONDS]")
	}
	seconds := 10
	if len(os.Args) > 2 {
		var err error
		if seconds, err = strconv.Atoi(os.Args[2]); err != nil {
			return err
		}
	}
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		return err
	}
	j := job{Scheme: "http", MetricsPath: "/metrics"}
	if err := yaml.UnmarshalStrict(text, &j); err != nil {
		return err
	}
	if len(j.Discovery) != 1 {
		return fmt.Errorf("%s: want one kubernetes_sd_configs entry, got %d", j.JobName, len(j.Discovery))
	}
	for _, r := range j.Relabel {
		if err := r.Validate(model.UTF8Validation); err != nil {
			return err
		}
	}
	groups, err := discover(j.Discovery[0], time.Duration(seconds)*time.Second)
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for _, tg := range groups {
		for _, target := range tg.Targets {
			if ls, keep := populate(&j, target, tg.Labels); keep {
				if err := out.Encode(ls.Map()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// discover runs the discoverer for ``wait`` and returns the last state of every target group.
func discover(sd *kubernetes.SDConfig, wait time.Duration) ([]*targetgroup.Group, error) {
	reg := prometheus.NewRegistry()
	metrics := sd.NewDiscovererMetrics(reg, discovery.NewRefreshMetrics(reg))
	if err := metrics.Register(); err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := sd.NewDiscoverer(discovery.DiscovererOptions{Logger: logger, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	updates := make(chan []*targetgroup.Group)
	go d.Run(ctx, updates)
	latest := map[string]*targetgroup.Group{}
	for {
		select {
		case tgs := <-updates:
			for _, tg := range tgs {
				latest[tg.Source] = tg
			}
		case <-ctx.Done():
			groups := make([]*targetgroup.Group, 0, len(latest))
			for _, tg := range latest {
				groups = append(groups, tg)
			}
			return groups, nil
		}
	}
}

func populate(j *job, target, group model.LabelSet) (labels.Labels, bool) {
	lb := labels.NewBuilder(labels.EmptyLabels())
	for name, value := range group {
		lb.Set(string(name), string(value))
	}
	for name, value := range target {
		lb.Set(string(name), string(value))
	}
	for name, value := range map[string]string{
		model.JobLabel:         j.JobName,
		model.SchemeLabel:      j.Scheme,
		model.MetricsPathLabel: j.MetricsPath,
	} {
		if lb.Get(name) == "" {
			lb.Set(name, value)
		}
	}
	if !relabel.ProcessBuilder(lb, j.Relabel...) {
		return labels.EmptyLabels(), false
	}
	lb.Range(func(l labels.Label) {
		if strings.HasPrefix(l.Name, model.MetaLabelPrefix) {
			lb.Del(l.Name)
		}
	})
	if lb.Get(model.InstanceLabel) == "" {
		lb.Set(model.InstanceLabel, lb.Get(model.AddressLabel))
	}
	return lb.Labels(), true
}
