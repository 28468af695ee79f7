package match

import (
	"fmt"

	"github.com/podtrace/kubectl-podtrace/pkg/trace"
)

// relevantChanges keeps neighbour entries of the endpoints' IPs (and of
// addresses they resolved by ARP) and FDB entries of their MACs.
func relevantChanges(t *trace.Trace, s trace.Session) []*trace.Change {
	ips := map[string]bool{s.Src.IP: true, s.Dst.IP: true}
	macs := map[string]bool{}
	for _, j := range t.Journeys {
		for _, o := range j.Obs {
			if a := o.P.ARP; a != nil {
				ips[a.SenderIP], ips[a.TargetIP] = true, true
				macs[a.SenderMAC] = true
			}
			if o.P.Eth != nil && (o.P.IP != nil || o.P.ARP != nil) && o.P.Encap == nil {
				macs[o.P.Eth.Src] = true
			}
		}
	}
	delete(ips, "")
	delete(macs, "00:00:00:00:00:00")
	var out []*trace.Change
	for _, c := range t.Changes {
		w := c.C
		switch {
		case w.Neigh != nil && ips[w.Neigh.IP]:
			was := ""
			if w.Was != "" {
				was = " (was: " + w.Was + ")"
			} else if w.Action == "new" {
				was = " (new)"
			}
			mac := w.Neigh.MAC
			if mac == "" {
				mac = "?"
			}
			if w.Action == "deleted" {
				c.Text = fmt.Sprintf("neigh %s %s deleted", w.Neigh.IP, w.Neigh.Dev)
			} else {
				c.Text = fmt.Sprintf("neigh %s → %s %s on %s%s", w.Neigh.IP, mac, w.Neigh.State, w.Neigh.Dev, was)
			}
		case w.FDB != nil && macs[w.FDB.MAC] && !w.FDB.Local:
			br := w.FDB.Bridge
			if br != "" {
				br += " "
			}
			switch w.Action {
			case "deleted":
				c.Text = fmt.Sprintf("%sfdb %s on %s removed", br, w.FDB.MAC, w.FDB.Port)
			case "new":
				c.Text = fmt.Sprintf("%sfdb %s learned on %s (new)", br, w.FDB.MAC, w.FDB.Port)
			default:
				c.Text = fmt.Sprintf("%sfdb %s now on %s (was: %s)", br, w.FDB.MAC, w.FDB.Port, w.Was)
			}
		case w.Link != nil && w.Action != "new" && isOperState(w.Was) && w.Was != w.Link.State:
			c.Text = fmt.Sprintf("link %s %s", w.Link.Name, w.Link.State)
		default:
			continue
		}
		c.At = c.C.TS
		if cause := causeOf(t.Packets, c); cause != nil && !cause.P.TS.After(c.C.TS) {
			c.At, c.Cause = cause.P.TS, cause
		}
		out = append(out, c)
	}
	return out
}

// causeOf finds the frame that made the kernel learn an FDB or neighbour
// entry: the first frame from the MAC entering that bridge port, or the
// first ARP frame from that address reaching that namespace.
func causeOf(all []*trace.Obs, c *trace.Change) *trace.Obs {
	w := c.C
	if w.Action != "new" && w.Action != "changed" {
		return nil
	}
	for _, o := range all { // in time order
		if o.Agent != c.Agent || o.P.Dir != "in" {
			continue
		}
		switch {
		case w.FDB != nil:
			if o.P.Eth != nil && o.P.Encap == nil && o.P.Eth.Src == w.FDB.MAC && o.If.Name == w.FDB.Port {
				return o
			}
		case w.Neigh != nil:
			if o.If.Name != w.Neigh.Dev {
				continue
			}
			if a := o.P.ARP; a != nil && a.SenderIP == w.Neigh.IP && a.SenderMAC == w.Neigh.MAC {
				return o
			}
			// IPv6: a neighbour solicitation from the address, or an
			// advertisement for it, sent from that MAC.
			if l := o.P.L4; l != nil && l.Proto == "icmp6" && o.P.Eth != nil && o.P.Eth.Src == w.Neigh.MAC && o.P.IP != nil &&
				(l.Type == "neighbor-solicitation" && o.P.IP.Src == w.Neigh.IP || l.Type == "neighbor-advertisement" && l.Target == w.Neigh.IP) {
				return o
			}
		}
	}
	return nil
}

func isOperState(s string) bool {
	switch s {
	case "up", "down", "lowerlayerdown", "dormant", "notpresent", "testing", "unknown":
		return true
	}
	return false
}
