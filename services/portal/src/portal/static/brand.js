// The brand page's live preview: what the form says, shown as the portal and an email would wear it.
// Saving still goes through the form (and notify's checks); this only mirrors the fields.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("brand-form");
  const preview = document.getElementById("brand-preview");
  if (!form || !preview) return;
  const field = (name) => form.querySelector(`[data-preview="${name}"]`);
  const hex = /^#[0-9A-Fa-f]{6}$/;
  const update = () => {
    const name = field("name").value.trim();
    const email = field("email").value.trim();
    const logo = field("logo").value.trim();
    const color = field("color").value.trim();
    const footer = field("footer").value.trim();
    if (hex.test(color)) {
      preview.style.setProperty("--preview", color);
      field("color-picker").value = color;
    }
    document.getElementById("preview-name").textContent = name;
    document.getElementById("preview-sender").textContent = name;
    document.getElementById("preview-email").textContent = email ? `<${email}>` : "";
    document.getElementById("preview-footer").textContent = footer || name;
    const img = document.getElementById("preview-logo");
    const showLogo = /^https?:\/\/\S+$/.test(logo);
    img.hidden = !showLogo;
    document.getElementById("preview-name").hidden = showLogo;
    if (showLogo && img.getAttribute("src") !== logo) img.setAttribute("src", logo);
  };
  field("color-picker").addEventListener("input", () => {
    field("color").value = field("color-picker").value.toUpperCase();
    update();
  });
  form.addEventListener("input", update);
});
