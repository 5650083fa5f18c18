package api

import (
	"fmt"
	"math"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The rules below are those of the Kubernetes API server for apps/v1
// StatefulSets and v1 Services (pkg/apis/apps/validation and
// pkg/apis/core/validation), with their wording, plus what Stead needs on
// top: a set name short enough for its revision label, and a refusal of
// what Stead does not implement rather than silently ignoring it.

// MaxStatefulSetNameLength is the longest StatefulSet name: pods carry the
// label controller-revision-hash=<set>-<10-character hash>, and a label
// value may not exceed 63 characters (kubernetes#64023).
const MaxStatefulSetNameLength = 52

// ValidateStatefulSet checks a defaulted StatefulSet before it is created.
// It returns nil or an *InvalidError listing every problem.
func ValidateStatefulSet(s *appsv1.StatefulSet) error {
	errs := validateObjectMeta(&s.ObjectMeta, validateStatefulSetName, field.NewPath("metadata"))
	errs = append(errs, validateStatefulSetSpec(&s.Spec, field.NewPath("spec"))...)
	errs = append(errs, validateNoNUL(s)...)
	return newInvalid("apps", KindStatefulSet, &s.ObjectMeta, errs)
}

// immutableSpecMessage is Kubernetes' refusal of a change to a field that
// cannot change once the set exists.
const immutableSpecMessage = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"

// ValidateStatefulSetUpdate checks that the defaulted set updated may
// replace old: updated must be valid, keep its name and namespace, and
// change nothing in its spec but replicas, ordinals, template,
// updateStrategy, revisionHistoryLimit, persistentVolumeClaimRetentionPolicy
// and minReadySeconds. Fields the server owns (uid, creationTimestamp,
// resourceVersion) are the server's to carry over and are not compared.
func ValidateStatefulSetUpdate(old, updated *appsv1.StatefulSet) error {
	meta := field.NewPath("metadata")
	errs := apivalidation.ValidateImmutableField(updated.Name, old.Name, meta.Child("name"))
	errs = append(errs, apivalidation.ValidateImmutableField(updated.Namespace, old.Namespace, meta.Child("namespace"))...)
	// The name is not validated again: it cannot change.
	errs = append(errs, validateObjectMetaExceptName(&updated.ObjectMeta, meta)...)
	errs = append(errs, validateStatefulSetSpec(&updated.Spec, field.NewPath("spec"))...)
	errs = append(errs, validateNoNUL(updated)...)

	clone := updated.Spec.DeepCopy()
	clone.Replicas = old.Spec.Replicas
	clone.Ordinals = old.Spec.Ordinals
	clone.Template = old.Spec.Template
	clone.UpdateStrategy = old.Spec.UpdateStrategy
	clone.RevisionHistoryLimit = old.Spec.RevisionHistoryLimit
	clone.PersistentVolumeClaimRetentionPolicy = old.Spec.PersistentVolumeClaimRetentionPolicy
	clone.MinReadySeconds = old.Spec.MinReadySeconds
	if !equality.Semantic.DeepEqual(*clone, old.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), immutableSpecMessage))
	}
	return newInvalid("apps", KindStatefulSet, &updated.ObjectMeta, errs)
}

// validateStatefulSetName is a DNS label of at most
// MaxStatefulSetNameLength characters.
func validateStatefulSetName(name string, prefix bool) []string {
	msgs := apivalidation.NameIsDNSLabel(name, prefix)
	if len(name) <= MaxStatefulSetNameLength {
		return msgs
	}
	out := []string{fmt.Sprintf("must be no more than %d characters, because pods carry the label %s=<name>-<10-character hash>, whose value is limited to 63 characters",
		MaxStatefulSetNameLength, LabelRevisionHash)}
	for _, m := range msgs {
		if m != validation.MaxLenError(validation.DNS1123LabelMaxLength) {
			out = append(out, m)
		}
	}
	return out
}

// validateObjectMeta is Kubernetes' check of a namespaced object's
// metadata, less generateName: objects are applied by name.
func validateObjectMeta(m *metav1.ObjectMeta, nameFn apivalidation.ValidateNameFunc, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if m.GenerateName != "" {
		errs = append(errs, field.Forbidden(fldPath.Child("generateName"), "is not supported by Stead; set metadata.name"))
		m = m.DeepCopy()
		m.GenerateName = ""
	}
	return append(errs, apivalidation.ValidateObjectMeta(m, true, nameFn, fldPath)...)
}

// validateObjectMetaExceptName is validateObjectMeta without the name rule.
func validateObjectMetaExceptName(m *metav1.ObjectMeta, fldPath *field.Path) field.ErrorList {
	anyName := func(string, bool) []string { return nil }
	return validateObjectMeta(m, anyName, fldPath)
}

func validateStatefulSetSpec(spec *appsv1.StatefulSetSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList

	switch spec.PodManagementPolicy {
	case "":
		errs = append(errs, field.Required(fldPath.Child("podManagementPolicy"), ""))
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.Invalid(fldPath.Child("podManagementPolicy"), spec.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}

	strategyPath := fldPath.Child("updateStrategy")
	switch spec.UpdateStrategy.Type {
	case "":
		errs = append(errs, field.Required(strategyPath, ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if spec.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Invalid(strategyPath.Child("rollingUpdate"), spec.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := spec.UpdateStrategy.RollingUpdate; ru != nil {
			errs = append(errs, validateRollingUpdate(ru, strategyPath.Child("rollingUpdate"))...)
		}
	default:
		errs = append(errs, field.Invalid(strategyPath, spec.UpdateStrategy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}

	if p := spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		policyPath := fldPath.Child("persistentVolumeClaimRetentionPolicy")
		errs = append(errs, validateRetentionPolicyType(p.WhenDeleted, policyPath.Child("whenDeleted"))...)
		errs = append(errs, validateRetentionPolicyType(p.WhenScaled, policyPath.Child("whenScaled"))...)
	}

	if spec.Replicas == nil {
		errs = append(errs, field.Required(fldPath.Child("replicas"), ""))
	} else {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*spec.Replicas), fldPath.Child("replicas"))...)
	}
	if spec.RevisionHistoryLimit != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*spec.RevisionHistoryLimit), fldPath.Child("revisionHistoryLimit"))...)
	}
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), fldPath.Child("minReadySeconds"))...)
	if spec.Ordinals != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(spec.Ordinals.Start), fldPath.Child("ordinals", "start"))...)
		// Ordinals run from start to start+replicas-1; keep the last one
		// an int32 so that no consumer's arithmetic overflows.
		if spec.Replicas != nil && int64(spec.Ordinals.Start)+int64(*spec.Replicas) > math.MaxInt32 {
			errs = append(errs, field.Invalid(fldPath.Child("ordinals", "start"), spec.Ordinals.Start,
				fmt.Sprintf("ordinals.start + replicas must not exceed %d", math.MaxInt32)))
		}
	}

	if spec.ServiceName != "" {
		// The governing Service's name; Service names are DNS-1035 labels.
		for _, msg := range validation.IsDNS1035Label(spec.ServiceName) {
			errs = append(errs, field.Invalid(fldPath.Child("serviceName"), spec.ServiceName, msg))
		}
	}

	selectorPath := fldPath.Child("selector")
	if spec.Selector == nil {
		errs = append(errs, field.Required(selectorPath, ""))
	} else {
		selErrs := metavalidation.ValidateLabelSelector(spec.Selector, metavalidation.LabelSelectorValidationOptions{}, selectorPath)
		errs = append(errs, selErrs...)
		if len(spec.Selector.MatchLabels)+len(spec.Selector.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(selectorPath, spec.Selector, "empty selector is invalid for statefulset"))
		} else if len(selErrs) == 0 {
			selector, err := metav1.LabelSelectorAsSelector(spec.Selector)
			if err != nil {
				errs = append(errs, field.Invalid(selectorPath, spec.Selector, err.Error()))
			} else if !selector.Matches(labels.Set(spec.Template.Labels)) {
				errs = append(errs, field.Invalid(fldPath.Child("template", "metadata", "labels"), spec.Template.Labels,
					"`selector` does not match template `labels`"))
			}
		}
	}

	templatePath := fldPath.Child("template")
	errs = append(errs, metavalidation.ValidateLabels(spec.Template.Labels, templatePath.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(spec.Template.Annotations, templatePath.Child("metadata", "annotations"))...)
	if _, ok := spec.Template.Annotations[AnnotationGeneration]; ok {
		errs = append(errs, field.Forbidden(templatePath.Child("metadata", "annotations").Key(AnnotationGeneration),
			"is set by Stead when a pod is assigned to a node, never by a template"))
	}

	podPath := templatePath.Child("spec")
	if spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(podPath.Child("restartPolicy"), spec.Template.Spec.RestartPolicy,
			[]corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if spec.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(podPath.Child("activeDeadlineSeconds"), "activeDeadlineSeconds in StatefulSet is not Supported"))
	}
	claims := sets.New[string]()
	for _, c := range spec.VolumeClaimTemplates {
		claims.Insert(c.Name)
	}
	errs = append(errs, validatePodSpec(&spec.Template.Spec, claims, podPath)...)
	errs = append(errs, validateClaimTemplates(spec.VolumeClaimTemplates, fldPath.Child("volumeClaimTemplates"))...)
	return errs
}

// validateRollingUpdate checks partition and maxUnavailable.
func validateRollingUpdate(ru *appsv1.RollingUpdateStatefulSetStrategy, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ru.Partition != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*ru.Partition), fldPath.Child("partition"))...)
	}
	if mu := ru.MaxUnavailable; mu != nil {
		path := fldPath.Child("maxUnavailable")
		switch mu.Type {
		case intstr.String:
			msgs := validation.IsValidPercent(mu.StrVal)
			for _, msg := range msgs {
				errs = append(errs, field.Invalid(path, *mu, msg))
			}
			if len(msgs) == 0 {
				pct, _ := strconv.Atoi(mu.StrVal[:len(mu.StrVal)-1])
				switch {
				case pct == 0:
					errs = append(errs, field.Invalid(path, *mu, "cannot be 0"))
				case pct > 100:
					errs = append(errs, field.Invalid(path, *mu, "must not be greater than 100%"))
				}
			}
		case intstr.Int:
			errs = append(errs, apivalidation.ValidateNonnegativeField(int64(mu.IntVal), path)...)
			if mu.IntVal == 0 {
				errs = append(errs, field.Invalid(path, *mu, "cannot be 0"))
			}
		default:
			errs = append(errs, field.Invalid(path, *mu, "must be an integer or percentage (e.g '5%')"))
		}
	}
	return errs
}

func validateRetentionPolicyType(p appsv1.PersistentVolumeClaimRetentionPolicyType, fldPath *field.Path) field.ErrorList {
	switch p {
	case appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType:
		return nil
	}
	return field.ErrorList{field.NotSupported(fldPath, p, []appsv1.PersistentVolumeClaimRetentionPolicyType{
		appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType})}
}

// validateClaimTemplates checks the volumeClaimTemplates: unique DNS-label
// names, a positive storage request, and only what Stead's exclusive,
// file-system volumes can honour.
func validateClaimTemplates(claims []corev1.PersistentVolumeClaim, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range claims {
		c := &claims[i]
		path := fldPath.Index(i)
		namePath := path.Child("metadata", "name")
		switch {
		case c.Name == "":
			errs = append(errs, field.Required(namePath, ""))
		case names.Has(c.Name):
			errs = append(errs, field.Duplicate(namePath, c.Name))
		default:
			names.Insert(c.Name)
			for _, msg := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(namePath, c.Name, msg))
			}
		}
		errs = append(errs, metavalidation.ValidateLabels(c.Labels, path.Child("metadata", "labels"))...)
		errs = append(errs, apivalidation.ValidateAnnotations(c.Annotations, path.Child("metadata", "annotations"))...)

		spec := path.Child("spec")
		if len(c.Spec.AccessModes) == 0 {
			errs = append(errs, field.Required(spec.Child("accessModes"), "at least 1 access mode is required"))
		}
		for j, m := range c.Spec.AccessModes {
			switch m {
			case corev1.ReadWriteOnce, corev1.ReadWriteOncePod:
			default:
				errs = append(errs, field.NotSupported(spec.Child("accessModes").Index(j), m,
					[]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteOncePod}))
			}
		}
		if c.Spec.VolumeMode != nil && *c.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
			errs = append(errs, field.NotSupported(spec.Child("volumeMode"), *c.Spec.VolumeMode,
				[]corev1.PersistentVolumeMode{corev1.PersistentVolumeFilesystem}))
		}
		storagePath := spec.Child("resources", "requests").Key(string(corev1.ResourceStorage))
		if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
			errs = append(errs, field.Required(storagePath, ""))
		} else if q.Sign() <= 0 {
			errs = append(errs, field.Invalid(storagePath, q.String(), "must be greater than zero"))
		}
		errs = append(errs, validateResourceList(c.Spec.Resources.Requests, spec.Child("resources", "requests"))...)
		errs = append(errs, validateResourceList(c.Spec.Resources.Limits, spec.Child("resources", "limits"))...)
		if sc := c.Spec.StorageClassName; sc != nil && *sc != "" {
			for _, msg := range validation.IsDNS1123Subdomain(*sc) {
				errs = append(errs, field.Invalid(spec.Child("storageClassName"), *sc, msg))
			}
		}
		for _, unsupported := range []struct {
			name string
			set  bool
		}{
			{"selector", c.Spec.Selector != nil},
			{"volumeName", c.Spec.VolumeName != ""},
			{"dataSource", c.Spec.DataSource != nil},
			{"dataSourceRef", c.Spec.DataSourceRef != nil},
			{"volumeAttributesClassName", c.Spec.VolumeAttributesClassName != nil},
		} {
			if unsupported.set {
				errs = append(errs, field.Forbidden(spec.Child(unsupported.name), "is not supported by Stead: volumes are made from the storage class and the requested size"))
			}
		}
	}
	return errs
}

// ValidateService checks a defaulted Service before it is created. It
// returns nil or an *InvalidError listing every problem.
func ValidateService(s *corev1.Service) error {
	errs := validateObjectMeta(&s.ObjectMeta, apivalidation.NameIsDNS1035Label, field.NewPath("metadata"))
	errs = append(errs, validateServiceSpec(&s.Spec, field.NewPath("spec"))...)
	errs = append(errs, validateNoNUL(s)...)
	return newInvalid("", KindService, &s.ObjectMeta, errs)
}

// ValidateServiceUpdate checks that the defaulted Service updated may
// replace old: it must be valid and keep its name, namespace and cluster
// IP. An empty clusterIP in updated means "unchanged", as in Kubernetes,
// whose registry copies the old one in.
func ValidateServiceUpdate(old, updated *corev1.Service) error {
	meta := field.NewPath("metadata")
	errs := apivalidation.ValidateImmutableField(updated.Name, old.Name, meta.Child("name"))
	errs = append(errs, apivalidation.ValidateImmutableField(updated.Namespace, old.Namespace, meta.Child("namespace"))...)
	errs = append(errs, validateObjectMetaExceptName(&updated.ObjectMeta, meta)...)
	errs = append(errs, validateServiceSpec(&updated.Spec, field.NewPath("spec"))...)
	errs = append(errs, validateNoNUL(updated)...)
	if updated.Spec.ClusterIP != "" {
		errs = append(errs, apivalidation.ValidateImmutableField(updated.Spec.ClusterIP, old.Spec.ClusterIP, field.NewPath("spec", "clusterIP"))...)
	}
	return newInvalid("", KindService, &updated.ObjectMeta, errs)
}

func validateServiceSpec(spec *corev1.ServiceSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	headless := spec.ClusterIP == corev1.ClusterIPNone

	// Stead resolves Services in its DNS; it runs no proxy, node ports or
	// load balancers.
	if spec.Type != corev1.ServiceTypeClusterIP {
		errs = append(errs, field.NotSupported(fldPath.Child("type"), spec.Type, []corev1.ServiceType{corev1.ServiceTypeClusterIP}))
	}
	if spec.ClusterIP != "" && !headless {
		errs = append(errs, validation.IsValidIP(fldPath.Child("clusterIP"), spec.ClusterIP)...)
	}
	if len(spec.ClusterIPs) > 0 && spec.ClusterIPs[0] != spec.ClusterIP {
		errs = append(errs, field.Invalid(fldPath.Child("clusterIPs").Index(0), spec.ClusterIPs, "first value must match `clusterIP`"))
	}
	if len(spec.ExternalIPs) > 0 {
		errs = append(errs, field.Forbidden(fldPath.Child("externalIPs"), "is not supported by Stead, which runs no service proxy"))
	}

	portsPath := fldPath.Child("ports")
	if len(spec.Ports) == 0 && !headless {
		errs = append(errs, field.Required(portsPath, ""))
	}
	names := sets.New[string]()
	type portKey struct {
		port     int32
		protocol corev1.Protocol
	}
	seen := map[portKey]bool{}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		path := portsPath.Index(i)
		if len(spec.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(path.Child("name"), ""))
		} else if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(path.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(path.Child("port"), p.Port, msg))
		}
		errs = append(errs, validateProtocol(p.Protocol, path.Child("protocol"))...)
		errs = append(errs, validatePortNumOrName(p.TargetPort, path.Child("targetPort"))...)
		if p.NodePort != 0 {
			errs = append(errs, field.Forbidden(path.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
		}
		key := portKey{p.Port, p.Protocol}
		if seen[key] {
			errs = append(errs, field.Duplicate(path.Child("port"), p.Port))
		}
		seen[key] = true
	}

	errs = append(errs, metavalidation.ValidateLabels(spec.Selector, fldPath.Child("selector"))...)

	switch spec.SessionAffinity {
	case corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("sessionAffinity"), spec.SessionAffinity,
			[]corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}))
	}
	if p := spec.InternalTrafficPolicy; p != nil && *p != corev1.ServiceInternalTrafficPolicyCluster && *p != corev1.ServiceInternalTrafficPolicyLocal {
		errs = append(errs, field.NotSupported(fldPath.Child("internalTrafficPolicy"), *p,
			[]corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}))
	}
	return errs
}
