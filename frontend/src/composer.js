// The composer and the settings panel above it: the message box, the adapter picker with its
// description, "Compare with", and the conversation's system prompt.
import { chosenToCompare } from "./compare.js";

/** `page` answers currentId(), current() (the conversation on show, from the sidebar),
 * isBusy(), connected(), branchTip(), and takes sendMessage(content, parent) -> bool,
 * onCreated(conversation), onCompared(sent) and onNotice(sentence). */
export class Composer {
  constructor(ui, { api, urls, page }) {
    this.ui = ui;
    this.api = api;
    this.urls = urls;
    this.page = page;
    ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    ui.composer.addEventListener("keydown", (event) => this.onKeydown(event));
    ui.picker.addEventListener("change", () => this.onAdapterChange());
    ui.settingsSave.addEventListener("click", () => this.saveSettings());
    this.showAdapterDescription();
    this.showSettingsSummary();
  }

  /** The adapter picked ("" is the base model). */
  get adapter() {
    return this.ui.picker.value;
  }

  /** An adapter's name as the picker shows it. */
  adapterName(slug) {
    if (!slug) return "Base model";
    const option = [...this.ui.picker.options].find((item) => item.value === slug);
    return option ? option.textContent.trim() : slug;
  }

  focus() {
    this.ui.composer.focus();
  }

  /** The panel would keep hiding the conversation (on a phone, most of it) while the answer comes. */
  foldSettings() {
    this.ui.settings.open = false;
  }

  onKeydown(event) {
    if (event.key !== "Enter" || event.isComposing) return;
    if (event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    this.submit();
  }

  async submit() {
    const content = this.ui.composer.value;
    if (!content.trim() || this.page.isBusy() || !this.page.connected()) return;
    const parent = this.page.branchTip();
    if (!this.page.currentId() && this.ui.systemPrompt.value.trim()) {
      // A system prompt needs its conversation before the first message.
      if (!(await this.createConversation())) return;
    }
    if (this.compareChoices().length) {
      await this.sendCompare(content);
      return;
    }
    if (this.page.sendMessage(content, parent)) this.ui.composer.value = "";
  }

  /** The adapters ticked under "Compare with", less the one picked above (it answers anyway). */
  compareChoices() {
    return chosenToCompare(this.ui.compareBoxes.filter((box) => box.checked).map((box) => box.value), this.adapter);
  }

  /** One message to the picked adapter and each ticked one, through the native API (the page's
   * session); the answers then stream over the socket like any other. */
  async sendCompare(content) {
    if (!this.page.currentId() && !(await this.createConversation())) return;
    const adapters = [this.adapter, ...this.compareChoices()];
    let sent;
    try {
      sent = await this.api.postJSON(this.urls.messages(this.page.currentId()), { content, adapters });
    } catch (err) {
      this.page.onNotice(err.message);
      return;
    }
    this.ui.composer.value = "";
    this.foldSettings();
    for (const box of this.ui.compareBoxes) box.checked = false;
    await this.page.onCompared(sent);
  }

  async createConversation() {
    try {
      const conversation = await this.api.postJSON(this.urls.create(), {
        adapter: this.adapter,
        system_prompt: this.ui.systemPrompt.value,
      });
      this.page.onCreated(conversation);
      return true;
    } catch (err) {
      this.page.onNotice(err.message);
      return false;
    }
  }

  /** The settings of the conversation on show (`conversation`, when listed); a new chat keeps
   * the adapter picked but not the prompt. */
  showConversation(conversation) {
    if (!this.page.currentId()) {
      this.ui.systemPrompt.value = "";
    } else if (conversation) {
      this.ui.picker.value = conversation.adapter || "";
      this.ui.systemPrompt.value = conversation.system_prompt;
    }
    this.showAdapterDescription();
    this.showSettingsSummary();
  }

  showAdapterDescription() {
    const option = this.ui.picker.selectedOptions[0];
    this.ui.description.textContent = option ? option.dataset.description || "" : "";
  }

  showSettingsSummary() {
    const option = this.ui.picker.selectedOptions[0];
    const parts = [option ? option.textContent.trim() : "Base model"];
    if (this.ui.systemPrompt.value.trim()) parts.push("system prompt set");
    this.ui.settingsSummary.textContent = parts.join(" · ");
  }

  onAdapterChange() {
    this.showAdapterDescription();
    this.showSettingsSummary();
    if (this.page.currentId()) this.saveSettings();
  }

  async saveSettings() {
    this.showSettingsSummary();
    const id = this.page.currentId();
    if (!id) {
      this.ui.settingsStatus.textContent = "Applies from your first message.";
      return;
    }
    const conversation = this.page.current();
    try {
      const saved = await this.api.postJSON(this.urls.action(id, "settings"), {
        adapter: this.adapter,
        system_prompt: this.ui.systemPrompt.value,
      });
      if (conversation) Object.assign(conversation, saved);
      this.ui.settingsStatus.textContent = "Saved.";
    } catch (err) {
      this.ui.settingsStatus.textContent = err.message;
    }
  }
}
